"""The local backend's checks that need no model server: its socket path, and a port someone else holds."""

from __future__ import annotations

import tempfile

from mlops_airflow.serving.local import LocalServingBackend


def test_a_short_state_dir_keeps_the_socket_beside_the_state(tmp_path):
    backend = LocalServingBackend(model="churn", state_dir=tmp_path)
    assert backend.router_socket == tmp_path / "churn-router.sock"


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


def test_a_colour_port_held_by_another_program_is_refused_before_anything_starts(tmp_path):
    import socket

    import pytest
    from helpers import free_port

    from mlops_airflow.serving.base import Color, ColorNotReadyError
    from mlops_airflow.serving.local import LocalPorts

    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = stranger.getsockname()[1]
        ports = LocalPorts(live=free_port(), admin=free_port(), blue=taken, green=free_port())
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=ports)
        with pytest.raises(ColorNotReadyError, match=f"refusing to deploy churn v1 onto blue: port {taken} on 127.0.0.1 is taken"):
            backend.deploy(Color.BLUE, "1", "models:/churn/1")
    assert backend.status().colors[Color.BLUE].detail == "not running"
