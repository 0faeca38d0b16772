"""Every test here runs task code with Airflow's metadata database made unusable (the Task SDK rule)."""

import pytest


@pytest.fixture(autouse=True)
def _task_code_never_touches_the_metadata_db(no_metadata_db):
    return
