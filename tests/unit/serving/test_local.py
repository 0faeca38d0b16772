"""The local backend's protocol where no model server is needed: what a deploy starts, a colour port someone else holds, the factory's ports."""

from __future__ import annotations

from mlops_airflow.serving.local import LocalServingBackend


def test_a_model_server_starts_with_no_secret_of_the_worker_and_loads_safely(tmp_path, monkeypatch):
    """The server gets an allow-list of the worker's environment plus the MLflow env it was given; pickle is off."""
    import os
    import subprocess
    from types import SimpleNamespace

    from helpers import free_port

    from mlops_airflow.serving.base import Color
    from mlops_airflow.serving.local_ports import LocalPorts

    started = []

    class RecordingPopen:
        def __init__(self, args, **kwargs):
            started.append((args, kwargs["env"]))
            self.pid = os.getpid()

    monkeypatch.setattr("mlops_airflow.serving.local_processes.subprocess", SimpleNamespace(**{**vars(subprocess), "Popen": RecordingPopen}))
    for name, value in {
        "AIRFLOW__CORE__FERNET_KEY": "fernet-canary",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-canary",
        "AIRFLOW_CONN_AIRFLOW_API": "http://admin:api-canary@airflow",
        "MLFLOW_TRACKING_PASSWORD": "worker-canary",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    }.items():
        monkeypatch.setenv(name, value)
    mlflow_env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_TRACKING_USERNAME": "bot", "MLFLOW_TRACKING_PASSWORD": "given"}
    ports = LocalPorts(live=free_port(), blue=free_port(), green=free_port())
    backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=ports, env=mlflow_env)
    assert backend.deploy(Color.BLUE, "1", "models:/churn/1", estimator_kind="hist_gradient_boosting") is True
    ((argv, env),) = started
    assert argv[argv.index("-m") + 1 :][:1] == ["mlops_airflow.serving.model_server"]
    assert argv[-4:] == ["--model-uri", "models:/churn/1", "--estimator-kind", "hist_gradient_boosting"]
    assert [value for value in env.values() if "canary" in value] == []
    assert {name for name in env if name.startswith("AIRFLOW")} == set()
    assert {name: env[name] for name in mlflow_env} == mlflow_env
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert env["MLOPS_SERVING_PROCESS"] == f"{tmp_path / 'churn'}-blue"  # the marker that finds it again


def test_a_colour_port_held_by_another_program_is_refused_before_anything_starts(tmp_path):
    import socket

    import pytest
    from helpers import free_port

    from mlops_airflow.serving.base import Color, ColorNotReadyError
    from mlops_airflow.serving.local_ports import LocalPorts

    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = stranger.getsockname()[1]
        ports = LocalPorts(live=free_port(), blue=taken, green=free_port())
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=ports)
        with pytest.raises(ColorNotReadyError, match=f"refusing to deploy churn v1 onto blue: port {taken} on 127.0.0.1 is taken"):
            backend.deploy(Color.BLUE, "1", "models:/churn/1", estimator_kind="hist_gradient_boosting")
    assert backend.status().colors[Color.BLUE].detail == "not running"


def test_each_spec_gets_its_own_ports_from_the_factory(tmp_path):
    from helpers import churn_spec_raw, write_spec

    from mlops_airflow.serving.factory import local_serving_backend
    from mlops_airflow.specs import load_spec

    raw = churn_spec_raw()
    raw["serving"]["local"] = {"live_port": 9600}
    backend = local_serving_backend(load_spec(write_spec(raw, tmp_path)), state_dir=tmp_path)
    assert (backend.ports.live, backend.ports.blue, backend.ports.green) == (9600, 9601, 9602)
    assert backend.live_url() == "http://127.0.0.1:9600"
