"""performance_monitor_<model> with dag.test(): late labels joined to the champion's predictions, decay starts one retrain."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers import delete_dag_runs, task_states
from labelled_predictions import (
    LABELLED_END,
    LABELLED_START,
    RUN_DAY,
    record_release,
    register_champion_with_validation_scores,
    register_version,
    write_live_days,
    write_performance_spec,
    write_release_traffic,
)

pytestmark = pytest.mark.integration

MONITOR_TASKS = ("measure_performance", "decide_retrain", "trigger_retrain", "judge_release_outcomes")
NO_RELEASE = {"judge_release_outcomes": "skipped"}  # no A/B test or shadow replay awaits its outcomes
RETRAIN_RUN_ID = f"performance__{LABELLED_START}__{LABELLED_END}"


@pytest.fixture
def monitor(tmp_path, monkeypatch, mlflow_store, airflow_db):
    """A DagBag over a spec with a performance section reading this test's data."""
    from airflow.dag_processing.dagbag import DagBag
    from helpers import REPO_ROOT

    specs = tmp_path / "models"
    specs.mkdir()

    def build(**performance):
        write_performance_spec(specs, tmp_path / "data", **performance)
        monkeypatch.setenv("MLOPS_SPECS_DIR", str(specs))
        bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
        assert bag.import_errors == {}
        return bag.dags["performance_monitor_churn"]

    return build


def retrain_runs():
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return {run.run_id: run.conf for run in session.query(DagRun).filter(DagRun.dag_id == "retrain_churn")}


def run_monitor(dag, run_day: dt.date = RUN_DAY):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = dag.test(run_conf={"run_day": str(run_day)}, logical_date=dt.datetime.combine(run_day, dt.time(12), tzinfo=dt.UTC))
    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id, task_id="measure_performance", key="return_value").first()
        summary = row.value if row else None
    if isinstance(summary, str):
        summary = json.loads(summary)
    return str(getattr(dag_run.state, "value", dag_run.state)), task_states(dag_run), summary


def test_a_decayed_champion_starts_one_retrain_and_the_cooldown_holds_the_next(tmp_path, monitor, mlflow_store, statsd):
    version = register_champion_with_validation_scores(mlflow_store)
    write_live_days(tmp_path / "data", version, concept=1.0, live_share=0.5)  # half the rows scored in batch, half answered live
    delete_dag_runs("retrain_churn", RETRAIN_RUN_ID)
    before = retrain_runs()

    state, tasks, summary = run_monitor(monitor())

    assert (state, tasks) == ("success", {**dict.fromkeys(MONITOR_TASKS, "success"), **NO_RELEASE})
    new = {run_id: conf for run_id, conf in retrain_runs().items() if run_id not in before}
    assert list(new) == [RETRAIN_RUN_ID]
    conf = new[RETRAIN_RUN_ID]
    assert conf["reason"].startswith(f"performance decay of v{version} over {LABELLED_START}..{LABELLED_END}")
    verdict = conf["performance"]["verdict"]
    assert conf["performance"]["decayed"] is True
    assert verdict["drop_lower"] > 0.05, verdict
    assert verdict["realized"] < verdict["baseline"] - 0.1, verdict
    # Every day up to the run day has figures; only the labelled window's have realized ones.
    days = {entry["day"]: entry for entry in summary["days"]}
    assert sorted(days) == [str(LABELLED_START + dt.timedelta(days=i)) for i in range((RUN_DAY - LABELLED_START).days + 1)]
    for day, entry in days.items():
        labelled = LABELLED_START <= dt.date.fromisoformat(day) < LABELLED_END
        assert (entry["labelled"] == 800, entry["realized"] is not None) == (labelled, labelled), entry
        assert (entry["predictions"], entry["live_predictions"]) == (800, 400), entry
        # The scores look as they always did...
        assert entry["estimated"]["roc_auc"] > 0.75, entry
        assert entry["prediction_shift"] < 0.1, entry
        if labelled:
            assert entry["concept_drift"] is True, entry  # ...but the labels say otherwise
    assert set(summary["segments"]["contract"]) == {"month-to-month", "one-year", "two-year"}

    # Recorded on the champion's run: the summary and each day's figures, timestamped with their day.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = client.get_model_version("churn", version).run_id
    assert [a.path for a in client.list_artifacts(run_id, "performance")] == [f"performance/{RUN_DAY}.json"]
    history = client.get_metric_history(run_id, "live.realized.roc_auc")
    assert sorted(dt.datetime.fromtimestamp(m.timestamp / 1000, dt.UTC).date() for m in history) == [
        LABELLED_START + dt.timedelta(days=i) for i in range((LABELLED_END - LABELLED_START).days)
    ]
    from mlops_airflow.observability.metrics import find_metric

    names = {line.split(":", 1)[0] for line in statsd.drain()}
    assert {"mlops.performance.churn.roc_auc.realized", "mlops.performance.churn.decayed", "mlops.performance.churn.prediction_shift"} <= names
    assert all(find_metric(name) is not None for name in names), names

    # The next day's check finds the decay again, in a new window: the cooldown holds it back.
    state, tasks, _ = run_monitor(monitor(), RUN_DAY + dt.timedelta(days=1))
    assert (state, tasks) == ("success", {"measure_performance": "success", "decide_retrain": "skipped", "trigger_retrain": "skipped", **NO_RELEASE})
    assert [run_id for run_id in retrain_runs() if run_id not in before] == [RETRAIN_RUN_ID]


def test_a_healthy_champion_is_measured_no_retrain_starts_and_its_ab_test_is_judged_on_outcomes(tmp_path, monitor, mlflow_store):
    version = register_champion_with_validation_scores(mlflow_store)
    write_live_days(tmp_path / "data", version)
    # The champion went live through an A/B test against a worse version, on the last day whose labels are due.
    older = register_version(mlflow_store)
    ab = write_release_traffic(tmp_path / "data", "ab", day=LABELLED_END - dt.timedelta(days=1), new=version, old=older, rows=1200, hour=20)
    record_release(mlflow_store, version, "ab", ab)
    before = retrain_runs()

    state, tasks, summary = run_monitor(monitor())

    assert (state, tasks) == (
        "success",
        {"measure_performance": "success", "decide_retrain": "skipped", "trigger_retrain": "skipped", "judge_release_outcomes": "success"},
    )
    from mlflow.tracking import MlflowClient

    outcome = json.loads(MlflowClient(mlflow_store, mlflow_store).get_model_version("churn", version).tags["mlops.release.outcome"])
    assert (outcome["strategy"], outcome["old_version"], outcome["verdict"], outcome["new_rows"]) == ("ab", older, "Successful", 600)
    assert retrain_runs() == before
    assert summary["decayed"] is False
    assert summary["verdict"]["labelled_rows"] == 800 * 5 + 600  # and the champion's answers in its A/B test
    for entry in summary["days"]:
        if entry["realized"] is not None:
            # 800 rows a day: the realized AUC's standard error is about 0.02.
            assert abs(entry["estimated"]["roc_auc"] - entry["realized"]["roc_auc"]) < 0.06, entry
            assert entry["concept_drift"] is False, entry


def test_predictions_of_an_earlier_champion_are_not_judged(tmp_path, monitor, mlflow_store):
    """Right after a promotion the new champion has no labelled predictions of its own: no verdict, whatever the old one's did."""
    version = register_champion_with_validation_scores(mlflow_store)
    write_live_days(tmp_path / "data", str(int(version) + 1000), concept=1.0)

    state, tasks, summary = run_monitor(monitor())

    assert (state, tasks["decide_retrain"]) == ("success", "skipped")
    assert summary["verdict"]["labelled_rows"] == 0
    assert summary["reasons"] == ["0 labelled predictions in the window; a verdict needs 500"]
