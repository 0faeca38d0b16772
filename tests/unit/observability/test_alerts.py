"""Failure alerts: the message, and a callback that never raises and returns in bounded time whatever the webhook does."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from fake_http import FakeWebhook
from helpers import free_port

from mlops_airflow.observability.alerts import FailureAlert, alert_message

TOKEN = "alert-token-canary-7f3a"


def webhook_url(server: FakeWebhook) -> str:
    return f"{server.url}/hooks/mlops"


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hooks/mlops"  # nothing listens there now


def context(error: Exception | None = None) -> dict:
    ti = SimpleNamespace(dag_id="retrain_churn", task_id="promote_champion", run_id="manual__2026-11-23T00:00:00+00:00", try_number=2, log_url=None)
    return {"ti": ti, "exception": error or ValueError("gate non-inferiority roc_auc failed: lower bound -0.11 < -0.005")}


def use_webhook(monkeypatch, url: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_ALERTS", json.dumps({"conn_type": "http", "host": url, "password": TOKEN}))


def test_the_message_names_dag_task_run_try_error_and_log(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example.com")
    message = alert_message(context())
    assert message["text"].startswith("[mlops-airflow] retrain_churn.promote_champion failed (run manual__2026-11-23T00:00:00+00:00, try 2): ValueError: gate")
    assert message["log_url"] == "http://airflow.example.com/dags/retrain_churn/runs/manual__2026-11-23T00%3A00%3A00%2B00%3A00/tasks/promote_champion"
    assert "lower bound -0.11" in message["error"]


def test_delivered_with_the_token_as_bearer(monkeypatch, caplog):
    with FakeWebhook("ok") as webhook:
        use_webhook(monkeypatch, webhook_url(webhook))
        FailureAlert(timeout=5)(context())
    (request,) = webhook.requests
    assert request["path"] == "/hooks/mlops"
    assert request["body"]["dag_id"] == "retrain_churn"
    assert request["body"]["text"].startswith("[mlops-airflow] retrain_churn.promote_champion failed")
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in caplog.text
    assert webhook.url not in caplog.text


@pytest.mark.parametrize("mode", ["500", "hang", "refused"])
def test_a_failing_webhook_never_raises_returns_in_time_and_the_alert_is_logged(monkeypatch, caplog, statsd, mode):
    webhook = None if mode == "refused" else FakeWebhook(mode)
    try:
        use_webhook(monkeypatch, refused_url() if webhook is None else webhook_url(webhook))
        started = time.monotonic()
        FailureAlert(timeout=2)(context())
        took = time.monotonic() - started
    finally:
        if webhook:
            webhook.close()
    print(f"\nalert callback, webhook {mode}: returned in {took * 1000:.0f} ms")
    assert took < 2 + 5.0  # the timeout plus slack for a loaded machine; never the webhook's 60 s hang
    assert "FAILURE ALERT (not delivered" in caplog.text
    assert "retrain_churn.promote_champion failed" in caplog.text
    assert TOKEN not in caplog.text
    assert statsd(1) == ["mlops.alerts.retrain_churn.delivery_failed:1|c"]


def test_without_a_connection_the_alert_goes_to_the_log(caplog):
    FailureAlert(conn_id="no_such_alert_channel", timeout=1)(context())
    assert "not delivered: no connection no_such_alert_channel" in caplog.text


def test_even_a_broken_context_does_not_raise(caplog):
    assert FailureAlert(conn_id="no_such_alert_channel", timeout=1)({}) is None
    assert "FAILURE ALERT (not delivered: no connection no_such_alert_channel): [mlops-airflow] None.None failed" in caplog.text
    assert "no exception recorded" in caplog.text


def test_every_model_dag_alerts_on_failure():
    from mlops_airflow import dag_factory
    from mlops_airflow.specs import model_specs

    builders = (dag_factory.build_retrain_dag, dag_factory.build_drift_monitor_dag, dag_factory.build_batch_score_dag, dag_factory.build_rollback_dag)
    for dag in (build(spec) for spec in model_specs() for build in builders):
        for task in dag.tasks:
            callbacks = task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
            assert any(isinstance(callback, FailureAlert) for callback in callbacks), f"{dag.dag_id}.{task.task_id}"


# -- Deadline Alerts ------------------------------------------------------------------------------

DEADLINE_CONTEXT = {  # the simple context Airflow hands a deadline callback (Deadline.handle_miss)
    "dag_run": {"dag_id": "retrain_churn", "dag_run_id": "manual__2026-12-01T10:00:00+00:00", "state": "running", "queued_at": "2026-12-01T10:00:00Z"},
    "deadline": {"id": "0193", "deadline_time": "2026-12-01T14:00:00Z"},
}


def test_the_deadline_message_names_the_run_its_limit_and_its_state(monkeypatch):
    from mlops_airflow.observability.alerts import deadline_message

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example.com")
    message = deadline_message(DEADLINE_CONTEXT, 240.0)
    assert message["text"].startswith(
        "[mlops-airflow] retrain_churn run manual__2026-12-01T10:00:00+00:00 is not finished 240 min after it was queued "
        "(queued 2026-12-01T10:00:00Z, deadline 2026-12-01T14:00:00Z, state running)"
    )
    assert message["log_url"] == "http://airflow.example.com/dags/retrain_churn/runs/manual__2026-12-01T10%3A00%3A00%2B00%3A00"


@pytest.mark.parametrize("mode", ["ok", "500", "hang"])
def test_the_deadline_callback_never_raises_and_returns_in_time(monkeypatch, caplog, statsd, mode):
    import asyncio

    from mlops_airflow.observability.alerts import deadline_missed

    with FakeWebhook(mode) as webhook:
        use_webhook(monkeypatch, webhook_url(webhook))
        started = time.monotonic()
        outcome = asyncio.run(deadline_missed(DEADLINE_CONTEXT, limit_minutes=240.0, timeout=2))
        took = time.monotonic() - started
        requests = list(webhook.requests)
    assert took < 2 + 5.0
    assert requests[0]["body"]["text"].startswith("[mlops-airflow] retrain_churn run manual__2026-12-01T10:00:00+00:00 is not finished")
    assert requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    if mode == "ok":
        assert outcome == "delivered"
    else:
        assert outcome != "delivered"
        assert "DEADLINE ALERT (not delivered" in caplog.text
        assert statsd(1) == ["mlops.alerts.retrain_churn.delivery_failed:1|c"]
    assert TOKEN not in caplog.text
