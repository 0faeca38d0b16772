"""BackfillScoresOperator against a small stand-in for Airflow's REST API (the real one: tests/e2e)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from fake_airflow_api import FakeAirflowApi
from helpers import free_port

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.operators.backfill import BackfillScoresOperator

DRIFT = {"backfill_start": "2026-02-26", "backfill_end": "2026-02-28", "onset": "2026-02-26"}


@pytest.fixture
def api(monkeypatch):
    with FakeAirflowApi() as api:
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api.connection())
        yield api


def run(drift, **kwargs):
    return BackfillScoresOperator(task_id="backfill_scores", batch_score_dag_id="batch_score_churn", unavailable_delay=0.01, **kwargs).execute(
        {"params": {"drift": drift}}
    )


def test_one_backfill_per_drift_window(api):
    first = run(DRIFT)
    assert first == {"backfill_id": 1, "from_date": "2026-02-26", "to_date": "2026-02-28", "created": True}
    assert api.backfills[0]["reprocess_behavior"] == "completed"
    assert run(DRIFT)["created"] is False  # a retry, or a second run for the same window
    assert len(api.backfills) == 1


def test_a_refusal_is_retryable_and_says_why(api):
    api.refuse = True
    with pytest.raises(MlopsError, match="refused the backfill of batch_score_churn over 2026-02-26..2026-02-28: .*409.*already a running backfill"):
        run(DRIFT)


def test_runs_not_started_by_drift_have_nothing_to_backfill(api):
    with pytest.raises(AirflowSkipException, match="not a drift-triggered run"):
        run(None)


def test_a_bad_window_fails_without_retrying(api):
    with pytest.raises(AirflowFailException, match="before backfill_start"):
        run({"backfill_start": "2026-03-01", "backfill_end": "2026-02-01"})
    with pytest.raises(AirflowFailException, match="backfill_start"):
        run({"onset": "2026-03-01"})


def test_an_unreachable_api_is_retryable(monkeypatch):
    nothing_listens = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRFLOW_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": nothing_listens, "login": "a", "password": "b"})
    )
    with pytest.raises(MlopsError, match="unreachable"):
        run(DRIFT)


def test_a_busy_api_is_asked_again_within_the_task(api):
    api.busy = 3
    assert run(DRIFT)["created"] is True
    assert len(api.backfills) == 1
    assert api.busy == 0


def test_an_api_busy_for_too_long_fails_the_try_saying_why(api):
    api.busy = 10
    with pytest.raises(MlopsError, match="503.*Database is locked"):
        run(DRIFT, unavailable_attempts=3)
    assert api.backfills == []
    assert api.busy == 7  # three attempts, then Airflow's retry takes over


def test_a_backfill_created_before_a_server_error_is_found_not_created_again(api):
    """Airflow on SQLite can commit the backfill and then answer 500 "Database error": the next ask finds it."""
    api.broken_after_create = 1
    assert run(DRIFT) == {"backfill_id": 1, "from_date": "2026-02-26", "to_date": "2026-02-28", "created": False}
    assert len(api.backfills) == 1
    assert api.creations() == 1  # the second ask listed the backfills and created nothing


def test_wrong_credentials_fail_the_try_without_asking_again(api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api.connection(password="not-the-password"))
    with pytest.raises(MlopsError, match="401"):
        run(DRIFT)
    assert [r["path"] for r in api.requests] == ["/auth/token"]
    assert api.backfills == []
