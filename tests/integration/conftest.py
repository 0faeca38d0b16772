from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the session's AIRFLOW_HOME), migrated once."""
    from airflow.utils import db

    db.resetdb(skip_init=False)


@pytest.fixture
def dagbag():
    """Parsed afresh for every test: dag.test(run_conf=...) leaves the conf in the DAG's params."""
    from airflow.dag_processing.dagbag import DagBag
    from helpers import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag
