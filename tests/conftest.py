"""Test session set-up.

Airflow reads AIRFLOW_HOME and its configuration the first time it is imported, so the
isolation below runs at import of this file, before any test module imports Airflow.
"""

from __future__ import annotations

import os
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
for _name in ("MLOPS_TRAINING_BACKEND", "AIRFLOW_CONN_MLFLOW_DEFAULT"):
    os.environ.pop(_name, None)
(SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)
(SESSION_DIR / "mlflow").mkdir(parents=True, exist_ok=True)

import datetime as dt  # noqa: E402

import pytest  # noqa: E402
from helpers import DATA_DAYS, DATA_END, ROWS_PER_DAY  # noqa: E402


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
