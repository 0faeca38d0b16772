"""The local backend's checks that need no model server: its socket path, and a port someone else holds."""

from __future__ import annotations

import tempfile

import pytest

from mlops_airflow.serving.local import LocalServingBackend


def test_a_short_state_dir_keeps_the_sockets_beside_the_state(tmp_path):
    backend = LocalServingBackend(model="churn", state_dir=tmp_path)
    assert (backend.router_socket, backend.admin_socket) == (tmp_path / "sockets" / "churn-router.sock", tmp_path / "sockets" / "churn-admin.sock")


def test_a_long_state_dir_gets_one_short_socket_whatever_each_process_tmpdir(tmp_path, monkeypatch):
    state = tmp_path / ("deep-" * 20) / "serving"
    paths = set()
    for tmpdir in (tmp_path / "worker1" / "tmp", tmp_path / "worker2" / "tmp"):  # each Celery worker has its own
        tmpdir.mkdir(parents=True)
        monkeypatch.setenv("TMPDIR", str(tmpdir))
        monkeypatch.setattr(tempfile, "tempdir", None)  # as a fresh process would read it
        paths.add(LocalServingBackend(model="churn", state_dir=state).router_socket)
    (path,) = paths
    assert len(str(path)) <= 100
    assert path != LocalServingBackend(model="churn", state_dir=tmp_path / ("other-" * 20)).router_socket


@pytest.mark.parametrize("deep", [False, True], ids=["in-state-dir", "short-folder-in-tmp"])
def test_the_socket_folder_is_private_and_a_foreign_one_is_refused(tmp_path, deep):
    """The router's admin API re-routes live traffic: only this user may reach its socket."""
    from mlops_airflow.exceptions import MlopsError

    state = tmp_path / ("deep-" * 20 if deep else "s") / "serving"
    backend = LocalServingBackend(model="churn", state_dir=state)
    folder = backend._private_socket_dir()
    assert folder == backend.admin_socket.parent == backend.router_socket.parent
    assert folder.stat().st_mode & 0o777 == 0o700
    try:
        folder.chmod(0o755)  # someone opened it up, or made it before us
        with pytest.raises(MlopsError, match="only we can enter"):
            backend._private_socket_dir()
    finally:
        folder.chmod(0o700)
        if deep:
            folder.rmdir()


def test_the_router_admin_api_listens_on_a_private_unix_socket_only(tmp_path):
    backend = LocalServingBackend(model="churn", state_dir=tmp_path)
    assert backend._router_config(None)["admin"] == {"listen": f"unix/{backend.admin_socket}|0600"}
    assert backend._front_config()["admin"] == {"disabled": True}


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


def test_a_live_port_held_by_another_model_or_program_is_refused_not_shared(tmp_path):
    """Another model's front on our live port would keep answering our clients: no router of ours is started behind it."""
    import socket

    from helpers import free_port

    from mlops_airflow.serving.local_ports import LocalPorts
    from mlops_airflow.serving.local_proxy import ProxyError

    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = stranger.getsockname()[1]
        backend = LocalServingBackend(model="fraud", state_dir=tmp_path, ports=LocalPorts(live=taken, blue=free_port(), green=free_port()))
        backend._router_config = lambda color: pytest.fail("a router was configured behind a port that is not ours")
        backend._admin = lambda *args, **kwargs: (200, b"{}")  # the router answers: only the front is in question
        with pytest.raises(ProxyError, match=f"refusing to serve fraud on 127.0.0.1:{taken}: the port is taken .* give fraud its own serving.local.live_port"):
            backend.ensure_proxy(timeout=5)


def test_each_spec_gets_its_own_ports_from_the_factory(tmp_path):
    from helpers import churn_spec_raw, write_spec

    from mlops_airflow.serving.factory import local_serving_backend
    from mlops_airflow.specs import load_spec

    raw = churn_spec_raw()
    raw["serving"]["local"] = {"live_port": 9600}
    backend = local_serving_backend(load_spec(write_spec(raw, tmp_path)), state_dir=tmp_path)
    assert (backend.ports.live, backend.ports.blue, backend.ports.green) == (9600, 9601, 9602)
    assert backend.live_url() == "http://127.0.0.1:9600"
