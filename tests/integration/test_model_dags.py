"""The DAGs run with dag.test() against a real MLflow store (SQLite + local artifacts) and real data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import DATA_DAYS, DATA_END, task_states

pytestmark = pytest.mark.integration

SCORED_DAY = DATA_END - dt.timedelta(days=2)


@pytest.fixture
def registry(mlflow_store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)


def run(dagbag, dag_id, conf):
    dag_run = dagbag.dags[dag_id].test(run_conf=conf, logical_date=dt.datetime.combine(DATA_END, dt.time(), tzinfo=dt.UTC))
    return str(getattr(dag_run.state, "value", dag_run.state)), task_states(dag_run), dag_run


def alias_version(registry, alias):
    return str(registry.get_model_version_by_alias("churn", alias).version)


def test_retrain_then_score_then_roll_back(airflow_db, dagbag, churn_data, registry, churn_spec):
    # retrain: trains for real and registers a challenger.
    state, tasks, _ = run(dagbag, "retrain_churn", {"window_end": str(DATA_END), "window_days": DATA_DAYS, "reason": "integration test"})
    assert (state, tasks) == ("success", {"check_training_data": "success", "train_model": "success"})
    assert alias_version(registry, "challenger") == "1"
    (version,) = registry.search_model_versions("name = 'churn'")
    training_run = registry.get_run(version.run_id)
    assert training_run.data.tags["mlops.reason"] == "integration test"
    assert training_run.data.tags["mlops.dag_run"].startswith("retrain_churn/")
    assert training_run.data.params["window_start"] == str(DATA_END - dt.timedelta(days=DATA_DAYS))
    # The data check's report travels with the model it vetted.
    report = registry.download_artifacts(version.run_id, "data_check/report.json")
    assert json.loads(Path(report).read_text())["passed"] is True
    assert training_run.data.metrics["data_check.rows"] == DATA_DAYS * 300

    # batch score: nothing to score with before there is a champion.
    state, tasks, _ = run(dagbag, "batch_score_churn", {"partition_date": str(SCORED_DAY)})
    assert tasks == {"wait_for_partition": "success", "check_scoring_data": "success", "score_partition": "skipped"}

    registry.set_registered_model_alias("churn", "champion", "1")
    state, tasks, _ = run(dagbag, "batch_score_churn", {"partition_date": str(SCORED_DAY)})
    assert (state, tasks) == ("success", {"wait_for_partition": "success", "check_scoring_data": "success", "score_partition": "success"})
    predictions = pd.read_parquet(f"{churn_spec.data.predictions_uri.removeprefix('file://')}/dt={SCORED_DAY}/predictions.parquet")
    assert len(predictions) == 300
    assert set(predictions["model_version"]) == {"1"}
    assert predictions["probability_0"].add(predictions["probability_1"]).round(6).eq(1).all()
    assert {"customer_id", "event_ts", "prediction"} <= set(predictions.columns)

    # rollback: swaps champion and previous_champion, verified by reading back.
    second = registry.create_model_version("churn", source=version.source, run_id=version.run_id)
    registry.set_registered_model_alias("churn", "champion", second.version)
    registry.set_registered_model_alias("churn", "previous_champion", "1")
    state, tasks, _ = run(dagbag, "rollback_churn", {"reason": "bad release"})
    assert (state, tasks) == ("success", {"restore_previous_champion": "success"})
    assert alias_version(registry, "champion") == "1"
    assert alias_version(registry, "previous_champion") == str(second.version)


def test_retrain_on_a_window_without_data_fails_without_retrying(airflow_db, dagbag, churn_data, registry):
    state, tasks, dag_run = run(dagbag, "retrain_churn", {"window_end": "2020-02-01", "window_days": 20})
    assert (state, tasks) == ("failed", {"check_training_data": "failed", "train_model": "upstream_failed"})
    from airflow.utils.session import create_session

    with create_session() as session:
        check = next(ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == "check_training_data")
        assert check.try_number == 1  # AirflowFailException: no retry for bad data
    assert registry.search_model_versions("name = 'churn'") == []


def test_rollback_without_previous_champion_fails_clearly(airflow_db, dagbag, registry):
    registry.create_registered_model("churn")
    state, tasks, _ = run(dagbag, "rollback_churn", {})
    assert (state, tasks) == ("failed", {"restore_previous_champion": "failed"})


def test_drift_monitor_waits_for_the_day(airflow_db, dagbag, churn_data):
    state, tasks, _ = run(dagbag, "drift_monitor_churn", {"day": str(SCORED_DAY)})
    assert (state, tasks) == ("success", {"wait_for_current_data": "success", "check_current_data": "success"})


def test_templates_render_params(airflow_db, dagbag, churn_data, registry):
    # The rendered window reaches the entrypoint: an explicit window_days shows in the run's params.
    run(dagbag, "retrain_churn", {"window_end": str(DATA_END), "window_days": 10})
    (version,) = registry.search_model_versions("name = 'churn'")
    params = registry.get_run(version.run_id).data.params
    assert (params["window_start"], params["window_end"]) == (str(DATA_END - dt.timedelta(days=10)), str(DATA_END))
    # Without a reason Param, the run type is recorded.
    assert registry.get_run(version.run_id).data.tags["mlops.reason"] == "manual"
    assert json.loads(json.dumps(params))  # plain strings only


def test_bad_day_in_the_window_stops_training_and_is_quarantined(airflow_db, dagbag, churn_spec, registry):
    # A window of its own (June), so the shared data of the other tests stays intact.
    from mlops_airflow.synthetic import generate

    end = dt.date(2026, 6, 1)
    generate(churn_spec.data.uri, end - dt.timedelta(days=14), end, rows_per_day=300, seed=5)
    bad_day = end - dt.timedelta(days=3)
    bad_file = Path(churn_spec.data.uri.removeprefix("file://")) / f"dt={bad_day}" / "part-0.parquet"
    bad_file.write_bytes(bad_file.read_bytes()[:500])  # truncated
    original = bad_file.read_bytes()

    state, tasks, dag_run = run(dagbag, "retrain_churn", {"window_end": str(end), "window_days": 14})
    assert (state, tasks) == ("failed", {"check_training_data": "failed", "train_model": "upstream_failed"})
    assert registry.search_registered_models() == []  # no model trained
    quarantined = next(Path(churn_spec.data.uri.removeprefix("file://"), "_quarantine").glob(f"*/dt={bad_day}/part-0.parquet"))
    assert quarantined.read_bytes() == original
    assert not bad_file.parent.exists()
