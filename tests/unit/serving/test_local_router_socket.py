"""Where the local backend's front and router meet: a socket path every process sharing the state agrees on."""

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
