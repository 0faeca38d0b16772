"""DAG integrity: every file parses fast, offline and without heavy imports; every DAG is well formed."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_airflow.specs import load_specs

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO_ROOT / "dags").glob("*.py"))
KINDS = ("retrain", "drift_monitor", "batch_score", "rollback")
PARSE_TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


@pytest.fixture(scope="module")
def specs():
    return load_specs(REPO_ROOT / "include" / "models")


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_parses_offline_fast_and_light(dag_file):
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("parse_dag_file.py")), str(dag_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    PARSE_TIMES[dag_file.name] = report["seconds"]
    assert report["import_errors"] == {}
    assert report["dag_ids"], f"{dag_file.name} defines no DAG"
    assert report["heavy_modules"] == [], f"parsing {dag_file.name} imported {report['heavy_modules']}"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_spec_gets_all_four_dags(dagbag, specs):
    expected = {f"{kind}_{spec.name}" for spec in specs for kind in KINDS}
    assert expected <= set(dagbag.dag_ids)


def test_dag_properties(dagbag, specs):
    by_name = {spec.name: spec for spec in specs}
    for dag_id, dag in dagbag.dags.items():
        (model_tag,) = [t for t in dag.tags if t.startswith("model:")]
        spec = by_name[model_tag.removeprefix("model:")]
        assert f"`{spec.name}`" in (dag.doc_md or ""), f"{dag_id} has no doc_md naming its model"
        assert dag.catchup is False
        # Static: the spec's start date, never "now" or a moving date.
        assert dag.start_date == dt.datetime.combine(spec.schedules.start_date, dt.time(), tzinfo=dt.UTC), dag_id
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"
            assert task.owner == spec.owner


def test_retrain_runs_one_at_a_time_with_params(dagbag, specs):
    for spec in specs:
        dag = dagbag.dags[f"retrain_{spec.name}"]
        assert dag.max_active_runs == 1
        assert {"window_end", "window_days", "reason"} <= set(dag.params.keys())
        dag.params.validate()  # the defaults are a valid manual run


def test_rollback_is_manual_only(dagbag, specs):
    for spec in specs:
        from airflow.sdk.definitions.timetables.simple import NullTimetable

        assert isinstance(dagbag.dags[f"rollback_{spec.name}"].timetable, NullTimetable)


def test_parse_times_were_measured():
    # Printed in the terminal summary by conftest.py; here, make sure every file was timed.
    assert set(PARSE_TIMES) == {p.name for p in DAG_FILES}
