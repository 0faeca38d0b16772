"""The performance monitor's window, its record and its retrain gate (the guards: no decay, retrain off, a run in flight, the cooldown)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from helpers import task_context
from labelled_predictions import LABELLED_END, LABELLED_START, RUN_DAY, register_champion_with_validation_scores, write_live_days, write_performance_spec

from mlops_airflow.core.payloads import PerformanceSummary
from mlops_airflow.operators.performance import PerformanceRetrainGateOperator, labelled_window, live_metrics, measure, newest_scored_day

SUMMARY = PerformanceSummary(
    model="churn",
    champion_version="1",
    run_day=dt.date(2026, 2, 28),
    labelled_start=dt.date(2026, 2, 21),
    labelled_end=dt.date(2026, 2, 26),
    decayed=True,
    reasons=("roc_auc dropped 0.19 from the baseline 0.81",),
    retrain_run_id="performance__2026-02-21__2026-02-26",
    verdict={"metric": "roc_auc", "labelled_rows": 4000, "realized": 0.62},
    days=(
        {"day": "2026-02-21", "predictions": 800, "labelled": 800, "realized": {"roc_auc": 0.6, "accuracy": None}, "estimated": None, "prediction_shift": 0.02},
        {"day": "2026-02-28", "predictions": 800, "labelled": 0, "realized": None, "estimated": {"roc_auc": 0.8, "accuracy": 0.7}, "prediction_shift": None},
    ),
).to_xcom()


def test_the_labelled_window_ends_the_label_delay_before_the_day_after_the_run_day():
    assert labelled_window(dt.date(2026, 2, 28), label_delay_days=3, window_days=5) == (dt.date(2026, 2, 21), dt.date(2026, 2, 26))
    assert labelled_window(dt.date(2026, 2, 28), label_delay_days=0, window_days=1) == (dt.date(2026, 2, 28), dt.date(2026, 3, 1))


def test_each_known_figure_becomes_a_metric_of_its_day():
    rows = live_metrics(PerformanceSummary.from_xcom(SUMMARY))
    assert rows == [
        ("live.realized.roc_auc", 0.6, dt.date(2026, 2, 21)),
        ("live.prediction_shift", 0.02, dt.date(2026, 2, 21)),
        ("live.labelled_rows", 800.0, dt.date(2026, 2, 21)),
        ("live.estimated.roc_auc", 0.8, dt.date(2026, 2, 28)),
        ("live.estimated.accuracy", 0.7, dt.date(2026, 2, 28)),
        ("live.labelled_rows", 0.0, dt.date(2026, 2, 28)),
    ]


def test_the_gauges_take_the_newest_day_the_champion_scored():
    summary = PerformanceSummary.from_xcom(SUMMARY)
    assert newest_scored_day(summary)["day"] == "2026-02-28"
    unscored = {**SUMMARY["days"][1], "predictions": 0}
    assert newest_scored_day(PerformanceSummary.from_xcom({**SUMMARY, "days": [SUMMARY["days"][0], unscored]}))["day"] == "2026-02-21"


def test_the_champions_own_training_days_are_not_judged(tmp_path):
    """A champion trained until two days into the labelled window is judged on the days after that only."""
    import logging

    from mlops_airflow.specs import load_spec

    write_live_days(tmp_path / "data", "7", concept=1.0, rows_per_day=300)
    spec = load_spec(write_performance_spec(tmp_path, tmp_path / "data", min_labelled_rows=100))
    trained_until = LABELLED_START + dt.timedelta(days=2)
    summary = measure(spec, RUN_DAY, "7", None, log=logging.getLogger("test"), judged_from=trained_until)
    assert summary.days[0]["day"] == str(trained_until)
    assert summary.verdict["labelled_rows"] == 300 * (LABELLED_END - trained_until).days
    everything = measure(spec, RUN_DAY, "7", None, log=logging.getLogger("test"))
    assert everything.verdict["labelled_rows"] == 300 * (LABELLED_END - LABELLED_START).days
    # Trained after the run day: nothing is judged.
    assert measure(spec, RUN_DAY, "7", None, log=logging.getLogger("test"), judged_from=RUN_DAY + dt.timedelta(days=1)).days == ()


def test_only_the_champions_rows_count_whatever_files_a_day_holds(tmp_path):
    """A day with a second predictions file, of another version (a re-score half done by hand, say): only v7's rows count."""
    import logging

    import pandas as pd
    import pyarrow as pa

    from mlops_airflow.core.partitions import write_partition
    from mlops_airflow.specs import load_spec

    write_live_days(tmp_path / "data", "7", rows_per_day=300)
    day = LABELLED_START
    other = pd.read_parquet(tmp_path / "data" / "predictions" / f"dt={day}" / "predictions.parquet").head(100).assign(model_version="8")
    write_partition(pa.Table.from_pandas(other, preserve_index=False), f"file://{tmp_path}/data/predictions", day, "other.parquet")
    spec = load_spec(write_performance_spec(tmp_path, tmp_path / "data", min_labelled_rows=100))
    summary = measure(spec, RUN_DAY, "7", None, log=logging.getLogger("test"))
    first = summary.days[0]
    assert (first["day"], first["predictions"], first["labelled"]) == (str(day), 300, 300)
    assert summary.verdict["labelled_rows"] == 300 * (LABELLED_END - LABELLED_START).days


def test_a_score_that_is_not_a_number_fails_naming_its_day_even_without_labels(tmp_path):
    import logging

    import pandas as pd
    import pyarrow as pa

    from mlops_airflow.core.partitions import write_partition
    from mlops_airflow.core.performance_monitoring import PerformanceInputError
    from mlops_airflow.specs import load_spec

    write_live_days(tmp_path / "data", "7", rows_per_day=100)
    path = tmp_path / "data" / "predictions" / f"dt={RUN_DAY}" / "predictions.parquet"
    broken = pd.read_parquet(path)
    broken.loc[3, "probability_1"] = float("nan")
    write_partition(pa.Table.from_pandas(broken, preserve_index=False), f"file://{tmp_path}/data/predictions", RUN_DAY, "predictions.parquet")
    spec = load_spec(write_performance_spec(tmp_path, tmp_path / "data"))
    with pytest.raises(PerformanceInputError, match=f"{RUN_DAY}: the predictions' probability_1: 1 of 100 are not finite numbers"):
        measure(spec, RUN_DAY, "7", None, log=logging.getLogger("test"))


def test_the_monitor_reads_the_champions_training_end_and_measures_an_older_champion_without_its_scores(tmp_path, mlflow_store):
    """Through execute(): the version's mlops.window_end tag trims the days; a run without validation scores gives no estimates."""
    from helpers import register_champion_with_reference
    from mlflow.tracking import MlflowClient

    from mlops_airflow.operators.performance import PerformanceMonitorOperator

    version = register_champion_with_reference(mlflow_store, rows=300)  # a training run from before validation scores were logged
    trained_until = LABELLED_START + dt.timedelta(days=1)
    MlflowClient(mlflow_store, mlflow_store).set_model_version_tag("churn", version, "mlops.window_end", str(trained_until))
    write_live_days(tmp_path / "data", version, concept=1.0, rows_per_day=300)
    spec_path = write_performance_spec(tmp_path, tmp_path / "data", min_labelled_rows=100)
    monitor = PerformanceMonitorOperator(task_id="measure_performance", spec_path=spec_path, run_day=str(RUN_DAY))
    summary = monitor.execute(task_context(dag_id="performance_monitor_churn", task_id="measure_performance"))
    assert summary["days"][0]["day"] == str(trained_until)
    assert summary["verdict"]["labelled_rows"] == 300 * (LABELLED_END - trained_until).days
    assert all(day["estimated"] is None and day["prediction_shift"] is None for day in summary["days"])
    assert summary["verdict"]["baseline"] is None
    assert any("no promotion-time baseline" in reason for reason in summary["reasons"])
    # Recorded on the champion's run.
    run_id = MlflowClient(mlflow_store, mlflow_store).get_model_version("churn", version).run_id
    assert [a.path for a in MlflowClient(mlflow_store, mlflow_store).list_artifacts(run_id, "performance")] == [f"performance/{RUN_DAY}.json"]


def gate_context(summary, run_states=None):
    return task_context(
        {"measure_performance": summary},
        run_id="scheduled__2026-02-28",
        task_id="decide_retrain",
        dag_id="performance_monitor_churn",
        run_states=run_states,
    )


@pytest.fixture
def gate(tmp_path, mlflow_store):
    register_champion_with_validation_scores(mlflow_store, rows=400)

    def build(**performance):
        spec_path = write_performance_spec(tmp_path, tmp_path / "data", **performance)
        return PerformanceRetrainGateOperator(task_id="decide_retrain", spec_path=spec_path, monitor_task_id="measure_performance")

    return build


def test_the_gate_records_the_trigger_then_holds_the_next_window(gate, mlflow_store):
    from mlflow.tracking import MlflowClient

    operator = gate(cooldown_hours=72)
    context = gate_context(SUMMARY)
    decision = operator.execute(context)
    assert decision["run_id"] == context["ti"].pushed["run_id"] == "performance__2026-02-21__2026-02-26"
    assert decision["conf"]["reason"] == "performance decay of v1 over 2026-02-21..2026-02-26: roc_auc dropped 0.19 from the baseline 0.81"
    assert decision["conf"]["window_end"] == "2026-02-26"  # the retrain learns from the days whose outcomes arrived
    assert "days" not in decision["conf"]["performance"]  # each day's figures are on MLflow, not in every retrain's conf
    assert decision["conf"]["performance"]["monitor_run_id"] == "scheduled__2026-02-28"
    tag = json.loads(MlflowClient(mlflow_store, mlflow_store).get_registered_model("churn").tags["mlops.performance.last_trigger"])
    assert (tag["run_id"], tag["dag_run"]) == ("performance__2026-02-21__2026-02-26", "scheduled__2026-02-28")
    # The same window again (another run of the monitor for that day) passes: the trigger is idempotent.
    assert operator.execute(gate_context(SUMMARY, {tag["run_id"]: "running"}))["run_id"] == tag["run_id"]
    # The next day's window: held while that retrain runs, then by the cooldown.
    next_day = {**SUMMARY, "labelled_start": "2026-02-22", "labelled_end": "2026-02-27", "retrain_run_id": "performance__2026-02-22__2026-02-27"}
    with pytest.raises(AirflowSkipException, match="still running"):
        operator.execute(gate_context(next_day, {tag["run_id"]: "running"}))
    with pytest.raises(AirflowSkipException, match=r"cooldown 72 h"):
        operator.execute(gate_context(next_day, {tag["run_id"]: "success"}))
    assert gate(cooldown_hours=0).execute(gate_context(next_day, {tag["run_id"]: "success"}))["run_id"] == next_day["retrain_run_id"]
    # A champion trained until 2026-02-23 was judged from there: the reason says so.
    later = {**SUMMARY, "days": [{**SUMMARY["days"][0], "day": "2026-02-23"}]}
    assert "over 2026-02-23..2026-02-26" in gate(cooldown_hours=0).execute(gate_context(later))["conf"]["reason"]


def test_a_retrain_the_drift_monitor_started_holds_the_gate(gate, mlflow_store):
    from mlflow.tracking import MlflowClient

    drift = {"run_id": "drift__2026-02-25__2026-02-28", "onset": "2026-02-25", "window_end": "2026-02-28", "triggered_at": "2026-02-28T00:00:00+00:00"}
    operator = gate()
    MlflowClient(mlflow_store, mlflow_store).set_registered_model_tag("churn", "mlops.drift.last_trigger", json.dumps(drift))
    with pytest.raises(AirflowSkipException, match="retrain drift__2026-02-25__2026-02-28, started by the drift monitor, is still queued"):
        operator.execute(gate_context(SUMMARY, {drift["run_id"]: "queued"}))
    assert operator.execute(gate_context(SUMMARY, {drift["run_id"]: "success"}))["run_id"] == SUMMARY["retrain_run_id"]


def test_a_drift_trigger_recorded_but_not_yet_created_holds_the_gate_and_a_bad_record_fails_it(gate, mlflow_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store, mlflow_store)
    operator = gate()
    just_now = {"run_id": "drift__2026-02-25__2026-02-28", "triggered_at": dt.datetime.now(dt.UTC).isoformat()}
    client.set_registered_model_tag("churn", "mlops.drift.last_trigger", json.dumps(just_now))
    with pytest.raises(AirflowSkipException, match="the drift monitor recorded retrain drift__2026-02-25__2026-02-28 .* s ago, and it does not exist yet"):
        operator.execute(gate_context(SUMMARY))  # run_states: none, so the run is not found
    client.set_registered_model_tag("churn", "mlops.drift.last_trigger", "not json")
    with pytest.raises(AirflowFailException, match="the registered model's tag mlops.drift.last_trigger is not a trigger record"):
        operator.execute(gate_context(SUMMARY))


def test_no_decay_or_retrain_off_triggers_nothing(gate, mlflow_store):
    healthy = {**SUMMARY, "decayed": False, "reasons": ["roc_auc moved +0.0010 from the baseline 0.8100"]}
    with pytest.raises(AirflowSkipException, match=r"no decay: roc_auc moved \+0.0010"):
        gate().execute(gate_context(healthy))
    with pytest.raises(AirflowSkipException, match="performance.retrain is off"):
        gate(retrain=False).execute(gate_context(SUMMARY))


def test_a_summary_that_is_not_one_fails_the_gate(gate):
    with pytest.raises(AirflowFailException, match="no performance summary"):
        gate().execute(gate_context(None))
    with pytest.raises(AirflowFailException, match="performance_summary"):
        gate().execute(gate_context({**SUMMARY, "payload": "drift_summary"}))
