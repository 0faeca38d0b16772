"""The example consumer of a model's champion asset: scheduled on it, and what its task makes of the events."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from helpers import REPO_ROOT

from mlops_airflow.assets import champion_asset


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "example_new_champion.py"))
    assert bag.import_errors == {}
    return bag.dags["example_new_champion_churn"]


def test_it_is_scheduled_on_the_champion_asset_of_churn(dag):
    assert list(dag.timetable.asset_condition.objects) == [champion_asset("churn")]
    assert dag.catchup is False
    assert all(task.retries >= 2 for task in dag.tasks)


def test_its_task_reads_each_triggering_champion(dag, capsys):
    at = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    events = [
        SimpleNamespace(extra={"version": "3", "previous": "2", "decision": "promoted", "dag_run": "retrain_churn/manual__x"}, timestamp=at),
        SimpleNamespace(extra={"version": "2", "previous": "3", "decision": "rolled_back", "dag_run": "rollback_churn/manual__y"}, timestamp=at),
    ]
    callable_ = dag.get_task("note_new_champion").python_callable
    changes = callable_(triggering_asset_events={champion_asset("churn"): events})
    assert [(c["version"], c["decision"], c["at"]) for c in changes] == [("3", "promoted", at.isoformat()), ("2", "rolled_back", at.isoformat())]
    assert "churn: champion v2 (rolled_back; before: v3) by rollback_churn/manual__y" in capsys.readouterr().out
