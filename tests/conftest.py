"""Test session set-up.

Airflow reads AIRFLOW_HOME and its configuration the first time it is imported, so the
isolation below runs at import of this file, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from helpers import REPO_ROOT

SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlops-airflow-tests-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(SESSION_DIR / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{SESSION_DIR / 'airflow' / 'airflow.db'}",
        "MLOPS_DATA_ROOT": str(SESSION_DIR / "data"),
        "MLOPS_SPECS_DIR": str(REPO_ROOT / "include" / "models"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{SESSION_DIR / 'mlflow' / 'mlflow.db'}",
        "GIT_PYTHON_REFRESH": "quiet",
    }
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Serving processes that tests start (model servers, Caddy) live here, on free ports.
os.environ.update(
    {
        "MLOPS_SERVING_STATE_DIR": str(SESSION_DIR / "serving"),
        **{f"MLOPS_SERVING_{name}_PORT": str(_free_port()) for name in ("LIVE", "ADMIN", "BLUE", "GREEN")},
    }
)
for _name in ("MLOPS_TRAINING_BACKEND", "MLOPS_SERVING_BACKEND", "AIRFLOW_CONN_MLFLOW_DEFAULT"):
    os.environ.pop(_name, None)
(SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)
(SESSION_DIR / "mlflow").mkdir(parents=True, exist_ok=True)

import datetime as dt  # noqa: E402

import pytest  # noqa: E402
from helpers import DATA_DAYS, DATA_END, ROWS_PER_DAY  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _stop_serving_processes():
    """End the model servers and Caddy that any test started."""
    yield
    from mlops_airflow.serving.local import LocalServingBackend

    for state_file in (SESSION_DIR / "serving").glob("*.json"):
        LocalServingBackend(model=state_file.stem, state_dir=state_file.parent).stop_all()


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return SESSION_DIR


@pytest.fixture(scope="session")
def churn_spec():
    from mlops_airflow.specs import load_spec

    return load_spec(REPO_ROOT / "include" / "models" / "churn.yaml")


@pytest.fixture(scope="session")
def churn_data(churn_spec):
    """Small demo partitions for [DATA_END - DATA_DAYS, DATA_END), written once per session."""
    from mlops_airflow.synthetic import generate

    start = DATA_END - dt.timedelta(days=DATA_DAYS)
    generate(churn_spec.data.uri, start, DATA_END, rows_per_day=ROWS_PER_DAY, seed=11)
    return start, DATA_END


@pytest.fixture
def small_spec_file(tmp_path, churn_spec):
    """A copy of the churn spec with a short window and a fast estimator, for training tests."""
    import yaml

    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    raw["training"].update(window_days=DATA_DAYS, validation_days=5, reference_sample_rows=500)
    raw["training"]["estimator"] = {"kind": "hist_gradient_boosting", "params": {"max_iter": 30}}
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A fresh MLflow tracking + registry store (SQLite, local artifacts), also as ``mlflow_default``."""
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "extra": {"tracking_uri": uri}}))
    monkeypatch.chdir(tmp_path)  # local artifacts land under ./mlruns of the test's folder
    return uri


@pytest.fixture
def statsd(monkeypatch):
    """A UDP socket standing in for the statsd server named in Airflow's [metrics] settings."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(sock.getsockname()[1]))

    def received(count):
        ours = []  # Airflow sends its own metrics to the same server
        while len(ours) < count:
            ours += [line for line in sock.recv(4096).decode().splitlines() if line.startswith("mlops.")]
        return sorted(ours)

    yield received
    sock.close()


@pytest.fixture(autouse=True)
def _restore_mlflow_uris():
    """MLflow keeps its tracking and registry URIs in module globals and in the environment;
    put both back after every test so that one test's server never answers another's calls."""
    import sys

    def module_globals():
        if "mlflow" not in sys.modules:
            return None
        import mlflow.tracking._model_registry.utils as registry_utils
        import mlflow.tracking._tracking_service.utils as tracking_utils

        return tracking_utils, registry_utils

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {key: os.environ.get(key) for key in keys}
    modules = module_globals()
    saved_globals = (modules[0]._tracking_uri, modules[1]._registry_uri) if modules else (None, None)
    yield
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    modules = module_globals()
    if modules:
        modules[0]._tracking_uri, modules[1]._registry_uri = saved_globals
