from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the session's AIRFLOW_HOME), migrated once."""
    from airflow.utils import db

    db.resetdb(skip_init=False)


def quick_spec(raw: dict) -> dict:
    """A spec that releases fast in dag.test(): no drain delay, a short smoke burst."""
    raw["serving"].update(drain_seconds=0, ready_timeout_seconds=180)
    raw["serving"]["smoke"].update(burst_requests=10, max_p95_ms=2000)
    return raw


@pytest.fixture
def dagbag(tmp_path, monkeypatch):
    """Parsed afresh for every test: dag.test(run_conf=...) leaves the conf in the DAG's params."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag
    from helpers import REPO_ROOT

    specs = tmp_path / "models"
    specs.mkdir()
    for source in (REPO_ROOT / "include" / "models").glob("*.yaml"):
        (specs / source.name).write_text(yaml.safe_dump(quick_spec(yaml.safe_load(source.read_text()))))
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(specs))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


@contextlib.contextmanager
def running_mlflow_server(folder: Path, *, app_name: str | None = None, env: dict[str, str] | None = None):
    """Start ``mlflow server`` on a free loopback port (SQLite + local artifacts under ``folder``); yield its URL.

    :param app_name: e.g. ``basic-auth`` (configure it through ``env``).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        *(["--app-name", app_name] if app_name else []),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("mlflow server did not start")
    try:
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` for one test; yields its URL."""
    with running_mlflow_server(tmp_path) as url:
        yield url


@pytest.fixture(autouse=True)
def serving_state(tmp_path, monkeypatch):
    """Each test serves from a clean slate: its own serving state, and its processes ended after it."""
    from mlops_airflow.serving.local import LocalServingBackend

    folder = tmp_path / "serving"
    monkeypatch.setenv("MLOPS_SERVING_STATE_DIR", str(folder))
    yield folder
    for state_file in folder.glob("*.json"):
        LocalServingBackend(model=state_file.stem, state_dir=folder).stop_all()
