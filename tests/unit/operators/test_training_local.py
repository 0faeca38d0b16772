from __future__ import annotations

import os

import pytest

from mlops_airflow.core.payloads import TrainingResult
from mlops_airflow.operators.training_local import LocalModelTrainingOperator

# What a fake entrypoint writes as its result file.
TRAINED = TrainingResult(
    run_id="r", model_uri="models:/churn/1", version="1", registered_model_name="churn", window_start="2026-01-01", window_end="2026-01-29", metrics={}
)


def test_constructor_does_no_io(tmp_path):
    # The spec is only read in execute(): a missing file must not break DAG parsing.
    operator = LocalModelTrainingOperator(task_id="train_model", spec_path=str(tmp_path / "missing.yaml"), window_start="{{ ds }}", window_end="{{ ds }}")
    assert operator.template_fields == ("window_start", "window_end", "data_report_uri", "reason")


def test_the_training_subprocess_gets_no_secret_of_the_worker(monkeypatch):
    """Only an allow-list of the worker's environment, the MLflow connection's URI and credentials, and no pickle."""
    import json
    import subprocess
    from types import SimpleNamespace

    from helpers import CHURN_SPEC

    started = []

    class RecordingPopen:
        def __init__(self, args, **kwargs):
            started.append(kwargs["env"])
            self.stdout = iter([])
            self.args = args

        def wait(self):
            result_path = self.args[self.args.index("--result-path") + 1]
            with open(result_path, "w", encoding="utf-8") as handle:
                json.dump(TRAINED.to_xcom(), handle)
            return 0

    monkeypatch.setattr("mlops_airflow.operators.training_local.subprocess", SimpleNamespace(**{**vars(subprocess), "Popen": RecordingPopen}))
    secrets = {
        "AIRFLOW__CORE__FERNET_KEY": "fernet-canary",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-canary",
        "AIRFLOW_CONN_AIRFLOW_API": "http://admin:api-canary@airflow",
        "MLOPS_MLFLOW_PIPELINE_PASSWORD": "pipeline-canary",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000, "login": "bot", "password": "mlflow-pw"})
    )
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    operator = LocalModelTrainingOperator(task_id="train_model", spec_path=str(CHURN_SPEC), window_start="2026-01-01", window_end="2026-01-29")
    operator.execute({"dag_run": SimpleNamespace(dag_id="retrain_churn", run_id="manual__1")})
    ((env,),) = [started]
    assert [value for value in env.values() if "canary" in value] == []
    assert {name for name in env if name.startswith("AIRFLOW")} == set()
    assert (env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("http://mlflow:5000", "bot", "mlflow-pw")
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert (env["PATH"], env["LC_ALL"], env["MLOPS_DATA_ROOT"]) == (os.environ["PATH"], "C.UTF-8", os.environ["MLOPS_DATA_ROOT"])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("$(MLFLOW_TRACKING_PASSWORD) ${HOME} `id`; $(echo hi) && rm -rf / #'\"", id="shell-syntax"),
        pytest.param("line one\nline two\r\n\ttab", id="newlines"),
        pytest.param("x" * 10_000, id="10k-characters"),
    ],
)
def test_the_local_entrypoint_gets_the_reason_verbatim_without_a_shell(monkeypatch, text):
    import json
    import subprocess
    from types import SimpleNamespace

    from helpers import CHURN_SPEC

    from mlops_airflow.constants import TAG_REASON
    from mlops_airflow.training.__main__ import parse_args

    calls = []

    class RecordingPopen:
        def __init__(self, args, **kwargs):
            calls.append((args, kwargs))
            self.stdout = iter(["trained\n"])
            self.args = args

        def wait(self):
            result_path = self.args[self.args.index("--result-path") + 1]
            with open(result_path, "w", encoding="utf-8") as handle:
                json.dump(TRAINED.to_xcom(), handle)
            return 0

    # Only the operator's module sees the recorder.
    monkeypatch.setattr("mlops_airflow.operators.training_local.subprocess", SimpleNamespace(**{**vars(subprocess), "Popen": RecordingPopen}))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000}))
    operator = LocalModelTrainingOperator(task_id="train_model", spec_path=str(CHURN_SPEC), window_start="2026-01-01", window_end="2026-01-29", reason=text)
    operator.execute({"dag_run": SimpleNamespace(dag_id="retrain_churn", run_id="manual__1")})
    ((argv, kwargs),) = calls
    assert isinstance(argv, list)
    assert not kwargs.get("shell")
    assert argv[1:3] == ["-m", "mlops_airflow.training"]
    assert dict(parse_args(argv[3:]).tag)[TAG_REASON] == text
