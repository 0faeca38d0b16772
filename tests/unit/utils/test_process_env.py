"""The environment of the processes we start: an allow-list of the worker's, never its secrets."""

from __future__ import annotations

import pytest

from mlops_airflow.utils.process_env import child_env, inheritable

WORKER = {
    "PATH": "/usr/bin",
    "HOME": "/home/airflow",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONPATH": "/opt/airflow/plugins",
    "MLOPS_DATA_ROOT": "/data",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "AIRFLOW__CORE__FERNET_KEY": "fernet",
    "AIRFLOW__API_AUTH__JWT_SECRET": "jwt",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
    "AIRFLOW_CONN_AIRFLOW_API": "http://admin:pw@api",
    "MLFLOW_TRACKING_PASSWORD": "worker-pw",
    "MLFLOW_TRACKING_TOKEN": "token",
    "MLOPS_MLFLOW_PIPELINE_PASSWORD": "pipeline-pw",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
}


@pytest.mark.parametrize(
    ("name", "passes"),
    [
        *(pytest.param(n, True, id=n) for n in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "MLOPS_DATA_ROOT", "MLFLOW_HTTP_REQUEST_TIMEOUT")),
        *(
            pytest.param(n, False, id=n)
            for n in WORKER
            if n.startswith("AIRFLOW") or (any(w in n for w in ("PASSWORD", "TOKEN", "SECRET")) and not n.startswith("AWS_"))
        ),
        # Object storage credentials: the data and the artifacts live there.
        *(
            pytest.param(n, True, id=n)
            for n in ("AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_KEY", "LD_LIBRARY_PATH")
        ),
    ],
)
def test_inheritable(name, passes):
    assert inheritable(name) is passes


def test_child_env_keeps_the_basics_adds_what_is_given_and_switches_pickle_off():
    env = child_env({"MLFLOW_TRACKING_URI": "http://mlflow", "MLFLOW_TRACKING_PASSWORD": "given"}, environ=WORKER)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/airflow",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": "/opt/airflow/plugins",
        "MLOPS_DATA_ROOT": "/data",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "MLFLOW_TRACKING_URI": "http://mlflow",
        "MLFLOW_TRACKING_PASSWORD": "given",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }


def test_pickle_stays_off_whatever_the_caller_passes():
    assert child_env({"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}, environ={})["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
