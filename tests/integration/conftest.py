from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the session's AIRFLOW_HOME), migrated once."""
    from airflow.utils import db

    db.resetdb(skip_init=False)


@pytest.fixture
def dagbag(tmp_path, monkeypatch):
    """Parsed afresh for every test: dag.test(run_conf=...) leaves the conf in the DAG's params."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag
    from helpers import REPO_ROOT, quick_spec

    specs = tmp_path / "models"
    specs.mkdir()
    for source in (REPO_ROOT / "include" / "models").glob("*.yaml"):
        (specs / source.name).write_text(yaml.safe_dump(quick_spec(yaml.safe_load(source.read_text()))))
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(specs))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` for one test; yields its URL."""
    from helpers import running_mlflow_server

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


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """Two versions of the demo's churn pipeline, their request bodies and offline predictions (tests/served_churn.py)."""
    from served_churn import build_churn

    return build_churn(tmp_path_factory)
