"""Test session set-up.

Airflow reads AIRFLOW_HOME and its configuration the first time it is imported, so the
isolation below runs at import of this file, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

from helpers import REPO_ROOT, free_port

pytest_plugins = ("suite_policy",)

SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlops-airflow-tests-"))

# The suite runs four test workers, each with its Airflow, MLflow and model processes, on as few
# as two cores. OpenMP's threads (scikit-learn's gradient boosting) spin while they wait for each
# other, and on an oversubscribed machine they spin on the cores the others need: with one busy
# process beside it, a fit took 2.2 s instead of 0.7 s and a 2-row prediction 21 ms instead of 5 ms
# (under the whole suite, 320 ms). One thread per process here; every process the tests start
# inherits it (the process allow-list passes OMP_NUM_THREADS). The model servers pin it themselves.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


# Serving processes that tests start (model servers, Caddy) live here, on free ports.
os.environ.update(
    {
        "MLOPS_SERVING_STATE_DIR": str(SESSION_DIR / "serving"),
        **{f"MLOPS_SERVING_{name}_PORT": str(free_port()) for name in ("LIVE", "BLUE", "GREEN")},
    }
)
for _name in ("MLOPS_TRAINING_BACKEND", "MLOPS_SERVING_BACKEND", "AIRFLOW_CONN_MLFLOW_DEFAULT"):
    os.environ.pop(_name, None)


def end_with_the_run(grace: float = 120.0) -> threading.Thread:
    """An xdist worker outlives an interrupted run: its parent (pytest) ends, and it goes on with its test.

    Seen here: after Ctrl-C (SIGINT to the run's process group) the worker running the
    distributed end-to-end test kept running it, with its whole stack, long after pytest had
    exited. Once the parent is gone, the worker is interrupted as Ctrl-C would (the test's
    ``finally`` and the fixtures' teardowns run, stopping what they started); if it still runs
    after ``grace`` seconds it is killed, and the stacks' watchdogs end what is left.
    """
    import _thread
    import signal
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        _thread.interrupt_main()
        time.sleep(grace)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="end-with-the-run", daemon=True)
    thread.start()
    return thread


if os.environ.get("PYTEST_XDIST_WORKER"):
    end_with_the_run()
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


@pytest.fixture(scope="session", autouse=True)
def _airflow_configuration_read():
    """Airflow sets up logging when its configuration is first read, which drops the handler that
    caplog installed for the test running then: read it before any test captures logs."""
    from airflow.sdk import conf

    conf.get("api", "base_url", fallback="")


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
    from mlops_airflow.embedded.synthetic import generate

    start = DATA_END - dt.timedelta(days=DATA_DAYS)
    generate(churn_spec.data.uri, start, DATA_END, rows_per_day=ROWS_PER_DAY, seed=11)
    return start, DATA_END


@pytest.fixture
def small_spec_file(tmp_path, churn_spec):
    """A copy of the churn spec with a short window and a fast estimator, for training tests."""
    from helpers import churn_spec_raw, write_spec

    raw = churn_spec_raw()
    raw["training"].update(window_days=DATA_DAYS, validation_days=5, reference_sample_rows=500)
    raw["training"]["estimator"] = {"kind": "hist_gradient_boosting", "params": {"max_iter": 30}}
    return write_spec(raw, tmp_path)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A fresh MLflow tracking + registry store (SQLite, local artifacts), also as ``mlflow_default``."""
    import json

    from helpers import fresh_mlflow_db

    uri = fresh_mlflow_db(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "extra": {"tracking_uri": uri}}))
    monkeypatch.chdir(tmp_path)  # local artifacts land under ./mlruns of the test's folder
    return uri


STATSD_TEST_PREFIX = "testprefix"


class StatsdListener:
    """Reads a UDP socket in a thread, as a statsd server would; keeps our lines, Airflow's prefix taken off."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.ours: list[str] = []
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="statsd-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        ours = f"{STATSD_TEST_PREFIX}.mlops."
        while not self._stop.is_set():
            try:
                payload = self.sock.recv(65536)
            except TimeoutError:
                continue
            # Airflow sends its own metrics to the same server, under the same prefix.
            lines = [line.removeprefix(f"{STATSD_TEST_PREFIX}.") for line in payload.decode().splitlines() if line.startswith(ours)]
            with self._arrived:
                self.ours += lines
                self._arrived.notify_all()

    def __call__(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until at least ``count`` of our lines arrived; all of them, sorted."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.ours) >= count, timeout=timeout)
            return sorted(self.ours)

    def drain(self, quiet: float = 0.5) -> list[str]:
        """Everything that arrived, once nothing new came for ``quiet`` seconds."""
        with self._arrived:
            while self._arrived.wait(timeout=quiet):
                pass
            return sorted(self.ours)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def statsd(monkeypatch):
    """A statsd server on loopback, named in Airflow's [metrics] settings, with a prefix of its own."""
    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", STATSD_TEST_PREFIX)
    yield listener
    listener.close()


class MetadataDatabaseTouchedError(AssertionError):
    """Task code reached for Airflow's metadata database (the Task SDK rule forbids it)."""


class _NoDatabase:
    def __getattr__(self, name):
        raise MetadataDatabaseTouchedError(f"task code used airflow.settings.{name}: the metadata database is off limits")

    def __call__(self, *args, **kwargs):
        raise MetadataDatabaseTouchedError("task code opened an Airflow metadata database session")


@pytest.fixture
def no_metadata_db(monkeypatch):
    """Airflow's metadata database made unusable: creating its engine or a session fails the test.

    Other databases (the MLflow store's SQLite) still work: only Airflow's URL is refused.
    """
    import sqlalchemy
    import sqlalchemy.engine
    from airflow import settings
    from airflow.configuration import conf

    forbidden = conf.get("database", "sql_alchemy_conn")
    real_create_engine = sqlalchemy.create_engine

    def guarded_create_engine(url, *args, **kwargs):
        if str(url) == forbidden:
            raise MetadataDatabaseTouchedError(f"task code created an engine for Airflow's metadata database ({forbidden})")
        return real_create_engine(url, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy, "create_engine", guarded_create_engine)
    monkeypatch.setattr(sqlalchemy.engine, "create_engine", guarded_create_engine)
    for name in ("engine", "Session", "NonScopedSession"):
        monkeypatch.setattr(settings, name, _NoDatabase(), raising=False)
    return


# Test folders whose tests run task code (operators, sensors) with the metadata database off.
TASK_CODE_TEST_FOLDERS = (Path(__file__).parent / "unit" / "operators", Path(__file__).parent / "unit" / "sensors")


@pytest.fixture(autouse=True)
def _task_code_never_touches_the_metadata_db(request):
    """Every operator and sensor unit test runs under ``no_metadata_db`` (the Task SDK rule).

    (Done here by path rather than in conftest.py files of those folders, so that the rule
    cannot be lost by moving a test file into another folder's conftest.)
    """
    if Path(str(request.node.path)).parent in TASK_CODE_TEST_FOLDERS:
        request.getfixturevalue("no_metadata_db")


_MLFLOW_SESSION_ENV = {
    key: os.environ.get(key)
    for key in (
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        # the Models page sets these in its (API server's) process: here, the test worker's
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    )
}


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
    # The active experiment and credentials are process-wide too: back to the session's start.
    for key, value in _MLFLOW_SESSION_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    modules = module_globals()
    if modules:
        modules[0]._tracking_uri, modules[1]._registry_uri = saved_globals
        import mlflow.tracking.fluent as fluent

        fluent._active_experiment_id = None
