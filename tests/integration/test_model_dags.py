"""The DAGs run with dag.test() against a real MLflow store (SQLite + local artifacts) and real data."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import (
    DATA_DAYS,
    DATA_END,
    REPO_ROOT,
    alias_version,
    asset_events,
    churn_spec_raw,
    delete_dag_runs,
    last_asset_event_id,
    quick_spec,
    task_states,
    write_spec,
)

from mlops_airflow.serving.base import Color

pytestmark = pytest.mark.integration

SCORED_DAY = DATA_END - dt.timedelta(days=2)


@pytest.fixture
def registry(mlflow_store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)


def run(dagbag, dag_id, conf):
    dag_run = dagbag.dags[dag_id].test(run_conf=conf, logical_date=dt.datetime.combine(DATA_END, dt.time(), tzinfo=dt.UTC))
    return str(getattr(dag_run.state, "value", dag_run.state)), task_states(dag_run), dag_run


RETRAIN_TASKS = ("check_training_data", "train_model", "evaluate_challenger", "approve_promotion", "promote_champion")
RELEASE_TASKS = ("deploy_idle_color", "smoke_test_idle", "switch_traffic", "verify_live", "scale_down_previous")
NOT_TRAINED = {
    "check_training_data": "failed",
    **dict.fromkeys((*RETRAIN_TASKS[1:], *RELEASE_TASKS, "backfill_scores"), "upstream_failed"),
    "rollback_release": "skipped",
}
# A run not started by drift has no days to re-score: backfill_scores skips.
RELEASED = {**dict.fromkeys(RETRAIN_TASKS + RELEASE_TASKS, "success"), "rollback_release": "skipped", "backfill_scores": "skipped"}


def set_paused(dag_id: str, paused: bool) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == dag_id).update({DagModel.is_paused: paused})


def queued_for(dag_id: str) -> int:
    """Asset events waiting to start a run of ``dag_id`` (what the scheduler turns into a run)."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(AssetDagRunQueue).filter(AssetDagRunQueue.target_dag_id == dag_id).count()


def sent_metrics(statsd) -> set[str]:
    """The names of our metrics that reached the statsd listener; each must be a declared one."""
    from mlops_airflow.observability.metrics import find_metric

    names = {line.split(":", 1)[0] for line in statsd.drain()}
    assert [name for name in names if find_metric(name) is None] == []
    return names


def test_retrain_promotes_then_score_then_roll_back(airflow_db, dagbag, churn_data, registry, churn_spec, statsd):
    before = last_asset_event_id()
    # retrain: trains for real, evaluates, and promotes the first model on the minimums alone.
    state, tasks, _ = run(dagbag, "retrain_churn", {"window_end": str(DATA_END), "window_days": DATA_DAYS, "reason": "integration test"})
    assert (state, tasks) == ("success", RELEASED)
    # Another team's DAG on the champion asset (dags/example_new_champion.py), synced by dag.test(), switched on.
    set_paused("example_new_champion_churn", False)
    assert alias_version(registry, "churn", "challenger") == alias_version(registry, "churn", "champion") == "1"
    (version,) = registry.search_model_versions("name = 'churn'")
    training_run = registry.get_run(version.run_id)
    assert training_run.data.tags["mlops.reason"] == "integration test"
    assert training_run.data.tags["mlops.dag_run"].startswith("retrain_churn/")
    assert training_run.data.params["window_start"] == str(DATA_END - dt.timedelta(days=DATA_DAYS))
    # The data check's report travels with the model it vetted.
    report = registry.download_artifacts(version.run_id, "data_check/report.json")
    assert json.loads(Path(report).read_text())["passed"] is True
    assert training_run.data.metrics["data_check.rows"] == DATA_DAYS * 300
    # The decision is on the version, and the evidence beside it.
    assert version.tags["mlops.decision"] == "promoted"
    assert version.tags["mlops.decision.window"] == f"{DATA_END - dt.timedelta(days=7)}..{DATA_END}"
    assert version.tags["mlops.decision.compared_with"] == "none"
    assert version.tags["mlops.decision.dag_run"].startswith("retrain_churn/manual__")
    (artifact,) = registry.list_artifacts(version.run_id, "promotion")
    record = json.loads(Path(registry.download_artifacts(version.run_id, artifact.path)).read_text())
    assert record["decision"] == "promoted"
    assert record["evaluation"]["rows"] == 7 * 300

    # batch score with the champion.
    state, tasks, _ = run(dagbag, "batch_score_churn", {"partition_date": str(SCORED_DAY)})
    assert (state, tasks) == ("success", {"wait_for_partition": "success", "check_scoring_data": "success", "score_partition": "success"})
    predictions = pd.read_parquet(f"{churn_spec.data.predictions_uri.removeprefix('file://')}/dt={SCORED_DAY}/predictions.parquet")
    assert len(predictions) == 300
    assert set(predictions["model_version"]) == {"1"}
    from mlops_airflow.assets import predictions_asset

    ((extra, task, partition, _),) = asset_events(predictions_asset(churn_spec).name, before)
    assert (extra, task, partition) == ({"day": str(SCORED_DAY), "rows": 300, "model_version": "1"}, "score_partition", str(SCORED_DAY))
    assert predictions["probability_0"].add(predictions["probability_1"]).round(6).eq(1).all()
    assert {"customer_id", "event_ts", "prediction"} <= set(predictions.columns)

    # A second release (the same data gives an equally good v2) goes live on green; blue is drained.
    from mlops_airflow.serving.local import LocalServingBackend

    assert run(dagbag, "retrain_churn", {"window_end": str(DATA_END), "window_days": DATA_DAYS})[0] == "success"
    backend = LocalServingBackend(model="churn")
    assert (backend.status().live, backend.status().live_version) == ("green", "2")
    assert backend.is_ready(Color.BLUE).ready is False

    # rollback: the aliases swap back and v1 is served again, on blue, after its own smoke test.
    state, tasks, _ = run(dagbag, "rollback_churn", {"reason": "bad release"})
    assert (state, tasks) == ("success", {"restore_previous_champion": "success", **dict.fromkeys(RELEASE_TASKS, "success"), "rollback_release": "skipped"})
    assert (backend.status().live, backend.status().live_version) == ("blue", "1")
    assert (alias_version(registry, "churn", "champion"), alias_version(registry, "churn", "previous_champion")) == ("1", "2")

    # Exactly the documented metrics reached statsd under Airflow's prefix, and nothing else of ours.
    assert sent_metrics(statsd) == {
        "mlops.data_check.churn.rows",
        "mlops.data_check.churn.rules_failed",
        "mlops.promotion.churn.challenger.roc_auc",
        "mlops.promotion.churn.champion.roc_auc",
        "mlops.promotion.churn.promoted",
        "mlops.serving.churn.smoke_latency_ms",
        "mlops.serving.churn.switch",
    }

    # A release whose smoke test fails is rolled back: the same data gives an equal v3 (promoted: non-inferior);
    # a latency budget no server meets fails its smoke test on green, and blue keeps serving v1.
    from airflow.dag_processing.dagbag import DagBag

    spec_file = Path(os.environ["MLOPS_SPECS_DIR"]) / "churn.yaml"  # the dagbag fixture's quick copy
    raw = yaml.safe_load(spec_file.read_text())
    raw["serving"]["smoke"]["max_p95_ms"] = 1
    spec_file.write_text(yaml.safe_dump(raw))
    state, tasks, _ = run(DagBag(dag_folder=str(REPO_ROOT / "dags")), "retrain_churn", {"window_end": str(DATA_END), "window_days": DATA_DAYS})
    assert state == "failed"
    assert (tasks["promote_champion"], tasks["smoke_test_idle"], tasks["switch_traffic"], tasks["rollback_release"]) == (
        "success",
        "failed",
        "upstream_failed",
        "success",
    )
    assert (backend.status().live, backend.status().live_version) == ("blue", "1")
    # The registry agrees with live traffic again; the version that failed its release is the one to compare with.
    assert (alias_version(registry, "churn", "champion"), alias_version(registry, "churn", "previous_champion")) == ("1", "3")
    assert "release failed" in registry.get_model_version("churn", "3").tags["mlops.serving.rolled_back"]

    # Every change of the champion, and only those, is an event of the asset churn.champion: the promotions,
    # the rollback DAG's restore, and the failed release's rollback (the run that moved nothing announced nothing).
    changes = asset_events("churn.champion", before)
    assert [(e["version"], e["previous"], e["decision"], task) for e, task, _, _ in changes] == [
        ("1", None, "promoted", "promote_champion"),
        ("2", "1", "promoted", "promote_champion"),
        ("1", "2", "rolled_back", "restore_previous_champion"),
        ("3", "1", "promoted", "promote_champion"),
        ("1", "3", "rolled_back", "rollback_release"),
    ]
    assert changes[0][0]["run_id"] == registry.get_model_version("churn", "1").run_id
    assert queued_for("example_new_champion_churn") >= 1  # the scheduler starts the consumer from these


def test_batch_score_skips_without_a_champion(airflow_db, dagbag, churn_data, registry):
    registry.create_registered_model("churn")
    state, tasks, _ = run(dagbag, "batch_score_churn", {"partition_date": str(SCORED_DAY)})
    assert tasks == {"wait_for_partition": "success", "check_scoring_data": "success", "score_partition": "skipped"}


def test_retrain_promotes_a_first_model_then_rejects_a_worse_one(airflow_db, churn_data, registry, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    raw = quick_spec(churn_spec_raw())
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()

    def retrain_with(estimator, window_days=DATA_DAYS):
        raw["training"]["estimator"] = estimator
        write_spec(raw, tmp_path / "models")
        bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
        assert bag.import_errors == {}
        return run(bag, "retrain_churn", {"window_end": str(DATA_END), "window_days": window_days})

    state, tasks, _ = retrain_with({"kind": "hist_gradient_boosting", "params": {"max_iter": 100}})
    assert (state, tasks["promote_champion"]) == ("success", "success")
    assert alias_version(registry, "churn", "champion") == "1"

    # A stump, on a shorter window: worse beyond the non-inferiority margin. Not promoted, and the run is still a success.
    state, tasks, _ = retrain_with({"kind": "hist_gradient_boosting", "params": {"max_iter": 1, "max_depth": 1}}, window_days=10)
    # The release after it is skipped: the live colour keeps serving v1.
    expected = {
        **dict.fromkeys(RETRAIN_TASKS[:-1], "success"),
        **dict.fromkeys((*RELEASE_TASKS, "rollback_release", "promote_champion", "backfill_scores"), "skipped"),
    }
    assert (state, tasks) == ("success", expected)
    assert alias_version(registry, "churn", "challenger") == "2"
    assert alias_version(registry, "churn", "champion") == "1"
    assert alias_version(registry, "churn", "previous_champion") is None
    rejected = registry.get_model_version("churn", "2")
    assert rejected.tags["mlops.decision"] == "rejected"
    assert rejected.tags["mlops.decision.compared_with"] == "1"
    assert "non-inferiority roc_auc" in rejected.tags["mlops.decision.reasons"]
    assert registry.list_artifacts(rejected.run_id, "promotion")
    # The rendered window reaches the entrypoint: the run's window_days Param shows in the training run's params,
    # and without a reason Param the run type is recorded.
    params = registry.get_run(rejected.run_id).data.params
    assert (params["window_start"], params["window_end"]) == (str(DATA_END - dt.timedelta(days=10)), str(DATA_END))
    assert registry.get_run(rejected.run_id).data.tags["mlops.reason"] == "manual"
    assert json.loads(json.dumps(params))  # plain strings only


def test_retrain_on_a_window_without_data_fails_without_retrying(airflow_db, dagbag, churn_data, registry):
    state, tasks, dag_run = run(dagbag, "retrain_churn", {"window_end": "2020-02-01", "window_days": 20})
    assert (state, tasks) == ("failed", NOT_TRAINED)
    from airflow.utils.session import create_session

    with create_session() as session:
        check = next(ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == "check_training_data")
        assert check.try_number == 1  # AirflowFailException: no retry for bad data
    assert registry.search_model_versions("name = 'churn'") == []


def test_rollback_without_previous_champion_fails_clearly_and_a_late_run_is_alerted(airflow_db, registry, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from fake_http import FakeWebhook

    raw = quick_spec(churn_spec_raw())
    raw["schedules"]["rollback_deadline_minutes"] = 0.1  # 6 s after a run was queued
    specs = tmp_path / "models"
    specs.mkdir()
    write_spec(raw, specs)
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(specs))
    # dag.test() writes the DAG with its deadline even when another test wrote rollback_churn seconds ago.
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
    registry.create_registered_model("churn")
    state, tasks, _ = run(DagBag(dag_folder=str(REPO_ROOT / "dags")), "rollback_churn", {})
    assert (state, tasks) == (
        "failed",
        {"restore_previous_champion": "failed", **dict.fromkeys(RELEASE_TASKS, "upstream_failed"), "rollback_release": "skipped"},
    )
    # A run queued as the trigger form queues it, that no worker finishes: Airflow's own deadline machinery,
    # as its scheduler and triggerer run it, posts our alert through the failure alerts' connection.
    with FakeWebhook("ok") as webhook:
        monkeypatch.setenv("AIRFLOW_CONN_MLOPS_ALERTS", json.dumps({"conn_type": "http", "host": webhook.url}))
        run_id, outcome = late_run_alerted("rollback_churn")
    delete_dag_runs("rollback_churn", run_id)  # queued for ever otherwise
    assert outcome == "delivered"
    ((request,),) = [webhook.requests]
    text = request["body"]["text"]
    assert text.startswith(f"[mlops-airflow] rollback_churn run {run_id} is not finished 0.1 min after it was queued"), text
    assert "state queued" in text


def late_run_alerted(dag_id: str, wait: float = 30.0) -> tuple[str, str]:
    """Queue a run of ``dag_id`` (no logical date), let its deadline pass, and do what the scheduler (Deadline.handle_miss)
    and the triggerer (the callback's trigger) do with it: the run id and what the callback returned."""
    import asyncio
    import time

    from airflow._shared.module_loading import import_string
    from airflow.models.deadline import Deadline
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        now = dt.datetime.now(dt.UTC)
        dag_run = dag.create_dagrun(
            run_id=f"manual__late_{now:%H%M%S%f}",
            run_after=now,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.QUEUED,
            session=session,
        )
        session.flush()
        (deadline,) = session.query(Deadline).filter(Deadline.dagrun_id == dag_run.id).all()
        assert abs((deadline.deadline_time - dag_run.queued_at).total_seconds() - 6) < 0.5
        time.sleep(max(0.0, min(wait, (deadline.deadline_time - dt.datetime.now(dt.UTC)).total_seconds() + 0.2)))
        deadline.handle_miss(session)
        session.flush()
        trigger = session.get(Trigger, deadline.callback.trigger_id)
        classpath, kwargs, run_id = trigger.classpath, dict(trigger.kwargs), dag_run.run_id

    async def events():
        return [event.payload async for event in import_string(classpath)(**kwargs).run()]

    payloads = asyncio.run(events())
    assert payloads[-1]["state"] == "success", payloads
    return run_id, payloads[-1]["body"]


def test_bad_day_in_the_window_stops_training_and_is_quarantined(airflow_db, dagbag, churn_spec, registry):
    # A window of its own (June), so the shared data of the other tests stays intact.
    from mlops_airflow.embedded.synthetic import generate

    end = dt.date(2026, 6, 1)
    generate(churn_spec.data.uri, end - dt.timedelta(days=14), end, rows_per_day=300, seed=5)
    bad_day = end - dt.timedelta(days=3)
    bad_file = Path(churn_spec.data.uri.removeprefix("file://")) / f"dt={bad_day}" / "part-0.parquet"
    bad_file.write_bytes(bad_file.read_bytes()[:500])  # truncated
    original = bad_file.read_bytes()

    state, tasks, dag_run = run(dagbag, "retrain_churn", {"window_end": str(end), "window_days": 14})
    assert (state, tasks) == ("failed", NOT_TRAINED)
    assert registry.search_registered_models() == []  # no model trained
    quarantined = next(Path(churn_spec.data.uri.removeprefix("file://"), "_quarantine").glob(f"*/dt={bad_day}/part-0.parquet"))
    assert quarantined.read_bytes() == original
    assert not bad_file.parent.exists()
