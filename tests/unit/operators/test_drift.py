"""The retrain gate (cooldown, run id, recorded trigger) and the Evidently report."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from helpers import DATA_END, register_champion_with_reference, task_context, write_drift_data, write_drift_spec

from mlops_airflow.core.payloads import DriftSummary
from mlops_airflow.exceptions import MlopsError
from mlops_airflow.operators.drift import DriftReportOperator, DriftRetrainGateOperator, cooldown_reason

NOW = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
SUMMARY = DriftSummary(
    model="churn",
    champion_version="1",
    window_start=dt.date(2026, 2, 27),
    window_end=dt.date(2026, 3, 1),
    onset=dt.date(2026, 2, 26),
    rows=1200,
    drifted_features=("monthly_charges", "contract"),
    retrain_run_id="drift__2026-02-26__2026-03-01",
).to_xcom()


def last(onset="2026-02-26", window_end="2026-02-28", hours_ago=2.0, run_id="drift__2026-02-26__2026-02-28"):
    return {"run_id": run_id, "onset": onset, "window_end": window_end, "triggered_at": (NOW - dt.timedelta(hours=hours_ago)).isoformat()}


@pytest.mark.parametrize(
    ("previous", "state", "blocked"),
    [
        (None, None, None),  # never triggered
        (last(), "success", "triggered 2.0 h ago"),  # overlapping, finished, within the cooldown
        (last(hours_ago=30), "success", None),  # overlapping, but the cooldown is over
        (last(hours_ago=30), "running", "still running"),  # still running blocks whatever its age
        (last(onset="2026-02-01", window_end="2026-02-10"), "running", None),  # another window
        (last(run_id=SUMMARY["retrain_run_id"], window_end="2026-03-01"), "success", None),  # the same window: idempotent
    ],
)
def test_cooldown(previous, state, blocked):
    reason = cooldown_reason(previous, DriftSummary.from_xcom(SUMMARY), cooldown=dt.timedelta(hours=24), now=NOW, last_run_state=state)
    assert (reason is None) if blocked is None else (blocked in reason)


def gate_context(summary, run_states=None):
    return task_context(
        {"detect_drift": summary}, run_id="scheduled__2026-03-01", task_id="decide_retrain", dag_id="drift_monitor_churn", run_states=run_states
    )


def test_the_gate_records_the_trigger_and_then_holds_the_next_overlapping_window(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    register_champion_with_reference(mlflow_store, rows=600)
    spec_path = write_drift_spec(tmp_path, tmp_path / "data")
    gate = DriftRetrainGateOperator(task_id="decide_retrain", spec_path=spec_path, sensor_task_id="detect_drift")
    context = gate_context(SUMMARY)
    decision = gate.execute(context)
    assert decision["run_id"] == context["ti"].pushed["run_id"] == "drift__2026-02-26__2026-03-01"
    assert context["ti"].pushed["conf"] == decision["conf"]
    assert decision["conf"]["window_end"] == "2026-03-01"
    # The summary, and the run that recorded it: the backfill re-scores only the days that run recorded.
    assert decision["conf"]["drift"] == {**SUMMARY, "monitor_run_id": "scheduled__2026-03-01"}
    assert decision["conf"]["reason"].startswith("drift in monthly_charges, contract since 2026-02-26")
    tag = json.loads(MlflowClient(mlflow_store, mlflow_store).get_registered_model("churn").tags["mlops.drift.last_trigger"])
    assert (tag["run_id"], tag["dag_run"]) == ("drift__2026-02-26__2026-03-01", "scheduled__2026-03-01")
    # The next day's alarm overlaps the window of a retrain that is still running: no second retrain.
    next_day = {**SUMMARY, "window_end": "2026-03-02", "retrain_run_id": "drift__2026-02-26__2026-03-02"}
    with pytest.raises(AirflowSkipException, match="still running"):
        gate.execute(gate_context(next_day, {"drift__2026-02-26__2026-03-01": "running"}))
    # The same window again (a repeated alarm) passes: the trigger itself is idempotent.
    assert gate.execute(gate_context(SUMMARY, {"drift__2026-02-26__2026-03-01": "running"}))["run_id"] == SUMMARY["retrain_run_id"]
    # A run Airflow no longer has is not running (the cooldown still holds); an API that fails fails the try.
    with pytest.raises(AirflowSkipException, match="cooldown"):
        gate.execute(gate_context(next_day, {}))
    with pytest.raises(MlopsError, match="cannot read the state of retrain_churn run drift__2026-02-26__2026-03-01.*500"):
        gate.execute(gate_context(next_day, {"drift__2026-02-26__2026-03-01": 500}))


def test_the_report_is_logged_on_the_champions_run(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    write_drift_data(tmp_path / "data")
    version = register_champion_with_reference(mlflow_store, rows=600)
    spec_path = write_drift_spec(tmp_path, tmp_path / "data")
    report = DriftReportOperator(task_id="render_drift_report", spec_path=spec_path, sensor_task_id="detect_drift")
    uri = report.execute(gate_context({**SUMMARY, "champion_version": version, "window_start": str(DATA_END - dt.timedelta(days=1))}))
    client = MlflowClient(mlflow_store, mlflow_store)
    run_id = client.get_model_version("churn", version).run_id
    assert uri == f"runs:/{run_id}/drift/scheduled__2026-03-01.html"
    html = client.download_artifacts(run_id, "drift/scheduled__2026-03-01.html", str(tmp_path))
    with open(html, encoding="utf-8") as page:
        assert "monthly_charges" in page.read()


def test_a_report_that_cannot_render_is_a_warning_not_a_failure(tmp_path, mlflow_store, monkeypatch):
    import mlops_airflow.operators.drift as drift_operators

    write_drift_data(tmp_path / "data", days=1)
    version = register_champion_with_reference(mlflow_store, rows=600)

    def broken(*args, **kwargs):
        raise RuntimeError("evidently exploded")

    monkeypatch.setattr(drift_operators, "render_evidently_report", broken)
    report = DriftReportOperator(task_id="render_drift_report", spec_path=write_drift_spec(tmp_path, tmp_path / "data"), sensor_task_id="detect_drift")
    assert report.execute(gate_context({**SUMMARY, "champion_version": version, "window_start": str(DATA_END - dt.timedelta(days=1))})) is None


def test_a_retrain_the_performance_monitor_started_holds_the_gate(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    register_champion_with_reference(mlflow_store, rows=600)
    gate = DriftRetrainGateOperator(task_id="decide_retrain", spec_path=write_drift_spec(tmp_path, tmp_path / "data"), sensor_task_id="detect_drift")
    started = {"run_id": "performance__2026-02-20__2026-02-27", "triggered_at": "2026-02-28T00:00:00+00:00", "dag_run": "scheduled__2026-02-28"}
    MlflowClient(mlflow_store, mlflow_store).set_registered_model_tag("churn", "mlops.performance.last_trigger", json.dumps(started))
    with pytest.raises(AirflowSkipException, match="retrain performance__2026-02-20__2026-02-27, started by the performance monitor, is still running"):
        gate.execute(gate_context(SUMMARY, {started["run_id"]: "running"}))
    assert gate.execute(gate_context(SUMMARY, {started["run_id"]: "failed"}))["run_id"] == SUMMARY["retrain_run_id"]
