"""drift_monitor_<model> with dag.test(): drift starts one retrain run with the summary; no drift starts none."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import (
    DATA_END,
    DRIFT_START,
    asset_events,
    delete_dag_runs,
    last_asset_event_id,
    register_champion_with_reference,
    task_states,
    write_drift_data,
    write_drift_spec,
)

pytestmark = pytest.mark.integration

MONITOR_TASKS = ("wait_for_current_data", "check_current_data", "detect_drift", "decide_retrain", "trigger_retrain", "render_drift_report")


@pytest.fixture
def monitor(tmp_path, monkeypatch, mlflow_store, airflow_db):
    """A DagBag over a spec that reads this test's data. dag.test() writes the sibling DAGs
    (retrain_churn, which the monitor triggers) to the database itself."""
    from airflow.dag_processing.dagbag import DagBag
    from helpers import REPO_ROOT

    specs = tmp_path / "models"
    specs.mkdir()

    def build(**drift):
        write_drift_spec(specs, tmp_path / "data", window_days=2, **drift)
        monkeypatch.setenv("MLOPS_SPECS_DIR", str(specs))
        bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
        assert bag.import_errors == {}
        return bag

    return build


def retrain_runs():
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return [(run.run_id, run.conf) for run in session.query(DagRun).filter(DagRun.dag_id == "retrain_churn")]


def run_monitor(bag):
    dag_run = bag.dags["drift_monitor_churn"].test(run_conf={"window_end": str(DATA_END)}, logical_date=dt.datetime.combine(DATA_END, dt.time(), tzinfo=dt.UTC))
    return str(getattr(dag_run.state, "value", dag_run.state)), task_states(dag_run)


def test_drift_triggers_one_retrain_with_the_summary(tmp_path, monitor, mlflow_store, statsd):
    write_drift_data(tmp_path / "data")
    register_champion_with_reference(mlflow_store)
    delete_dag_runs("retrain_churn", f"drift__{DRIFT_START}__{DATA_END}")  # an earlier test may have made it; the trigger would skip
    before, events_before = retrain_runs(), last_asset_event_id()
    state, tasks = run_monitor(monitor())
    assert (state, tasks) == ("success", dict.fromkeys(MONITOR_TASKS, "success"))
    # The drift is an event of the asset churn.drift: what other DAGs may be scheduled on.
    ((extra, task, _, _),) = asset_events("churn.drift", events_before)
    assert (extra["onset"], extra["window_end"], task) == (str(DRIFT_START), str(DATA_END), "detect_drift")
    assert "monthly_charges" in extra["drifted_features"]
    new = [run for run in retrain_runs() if run not in before]
    assert [run_id for run_id, _ in new] == [f"drift__{DRIFT_START}__{DATA_END}"]
    conf = new[0][1]
    assert conf["window_end"] == str(DATA_END)
    assert conf["drift"]["onset"] == str(DRIFT_START)
    assert "monthly_charges" in conf["drift"]["drifted_features"]
    assert conf["reason"].startswith("drift in ")
    # The documented drift metrics, one per tested feature, and nothing else of ours.
    from mlops_airflow.observability.metrics import (
        DATA_CHECK_ROWS,
        DATA_CHECK_RULES_FAILED,
        DRIFT_DOMAIN_AUC,
        DRIFT_DOMAIN_P_VALUE,
        DRIFT_DRIFTED_FEATURES,
        DRIFT_KS_STAT,
        DRIFT_P_VALUE,
        DRIFT_TVD,
        find_metric,
    )

    names = {line.split(":", 1)[0] for line in statsd.drain()}
    drift = {DRIFT_DRIFTED_FEATURES, DRIFT_KS_STAT, DRIFT_P_VALUE, DRIFT_TVD, DRIFT_DOMAIN_AUC, DRIFT_DOMAIN_P_VALUE}
    assert {find_metric(name) for name in names} == drift | {DATA_CHECK_ROWS, DATA_CHECK_RULES_FAILED}  # check_current_data too
    assert "mlops.drift.churn.monthly_charges.ks_stat" in names
    assert "mlops.drift.churn.drifted_features" in names
    assert "mlops.drift.churn.domain_auc" in names


def test_without_drift_no_retrain_starts(tmp_path, monitor, mlflow_store):
    write_drift_data(tmp_path / "data", drifted=False)
    register_champion_with_reference(mlflow_store)
    before, events_before = retrain_runs(), last_asset_event_id()
    state, tasks = run_monitor(monitor(timeout_minutes=0))
    assert state == "success"
    assert asset_events("churn.drift", events_before) == []
    assert tasks == {"wait_for_current_data": "success", "check_current_data": "success", **dict.fromkeys(MONITOR_TASKS[2:], "skipped")}
    assert retrain_runs() == before
