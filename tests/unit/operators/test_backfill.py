"""BackfillScoresOperator against a small stand-in for Airflow's REST API (the real one: tests/e2e)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from fake_airflow_api import FakeAirflowApi
from helpers import free_port

from mlops_airflow.core.payloads import DriftSummary
from mlops_airflow.exceptions import MlopsError
from mlops_airflow.operators.backfill import BackfillScoresOperator

MONITOR_RUN = "scheduled__2026-03-01T00:00:00+00:00"
# What detect_drift returned: the days to re-score are its onset to the window's last day, 2026-02-26..2026-02-28.
RECORDED = DriftSummary(
    model="churn",
    champion_version="1",
    window_start=dt.date(2026, 2, 27),
    window_end=dt.date(2026, 3, 1),
    onset=dt.date(2026, 2, 26),
    rows=1200,
    drifted_features=("monthly_charges",),
    retrain_run_id="drift__2026-02-26__2026-03-01",
).to_xcom()
DRIFT = {**RECORDED, "monitor_run_id": MONITOR_RUN}  # the retrain's drift Param, as the gate sets it


@pytest.fixture
def api(monkeypatch):
    with FakeAirflowApi() as api:
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api.connection())
        api.xcoms[("drift_monitor_churn", MONITOR_RUN, "detect_drift")] = RECORDED
        yield api


def run(drift, **kwargs):
    return BackfillScoresOperator(
        task_id="backfill_scores", batch_score_dag_id="batch_score_churn", drift_monitor_dag_id="drift_monitor_churn", unavailable_delay=0.01, **kwargs
    ).execute({"params": {"drift": drift}})


def test_one_backfill_per_drift_window(api):
    first = run(DRIFT)
    assert first == {"backfill_id": 1, "from_date": "2026-02-26", "to_date": "2026-02-28", "created": True, "rescored": []}
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
    with pytest.raises(AirflowFailException, match="last day 2026-02-01 is before its onset 2026-03-01"):
        run({**DRIFT, "onset": "2026-03-01", "window_end": "2026-02-02"})
    with pytest.raises(AirflowFailException, match="the drift Param is not what this task reads: drift_summary: missing 'model'"):
        run({"onset": "2026-03-01"})


class TestForgedDrift:
    """Anyone who may trigger the retrain can write its conf: only recorded, bounded drift windows are backfilled."""

    def test_a_window_beyond_the_spec_maximum_is_refused_before_asking_the_api(self, api):
        forged = {**DRIFT, "onset": "1900-01-01", "window_end": "2100-01-02"}
        with pytest.raises(AirflowFailException, match=r"1900-01-01..2100-01-01, 73050 days; drift.max_backfill_days allows 31"):
            run(forged)
        with pytest.raises(AirflowFailException, match=r"2026-02-26..2026-02-28, 3 days; drift.max_backfill_days allows 2"):
            run(DRIFT, max_backfill_days=2)
        assert api.requests == []

    @pytest.mark.parametrize(
        ("drift", "message"),
        [
            pytest.param({**DRIFT, "onset": "2026-02-01"}, r"2026-02-01..2026-02-28, but .*recorded the drifted days 2026-02-26..2026-02-28", id="other-days"),
            pytest.param({**DRIFT, "monitor_run_id": "manual__made_up"}, r"'manual__made_up' \(detect_drift\) recorded no drift", id="unknown-run"),
            pytest.param(RECORDED, "names no drift_monitor_churn run", id="no-monitor-run"),
            pytest.param({**DRIFT, "monitor_run_id": ["a"]}, "names no drift_monitor_churn run", id="monitor-run-not-text"),
        ],
    )
    def test_a_window_the_monitor_did_not_record_is_refused(self, api, drift, message):
        with pytest.raises(AirflowFailException, match=message):
            run(drift)
        assert api.creations() == 0


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
    assert run(DRIFT) == {"backfill_id": 1, "from_date": "2026-02-26", "to_date": "2026-02-28", "created": False, "rescored": []}
    assert len(api.backfills) == 1
    assert api.creations() == 1  # the second ask listed the backfills and created nothing


def test_wrong_credentials_fail_the_try_without_asking_again(api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api.connection(password="not-the-password"))
    with pytest.raises(MlopsError, match="401"):
        run(DRIFT)
    assert [r["path"] for r in api.requests] == ["/auth/token"]
    assert api.backfills == []


class TestRunsInFlight:
    """Found by the demo under load: a scheduled run still scoring a drifted day with the old champion was left alone by the backfill."""

    def in_flight(self, api, day="2026-02-28"):
        run = {"dag_id": "batch_score_churn", "dag_run_id": f"scheduled__{day}", "logical_date": f"{day}T00:00:00Z", "state": "running"}
        api.dag_runs.append(run)
        return run

    def test_the_backfill_waits_until_the_windows_runs_have_finished(self, api):
        import threading

        run_ = self.in_flight(api)
        api.dag_runs.append({"dag_id": "batch_score_churn", "dag_run_id": "outside", "logical_date": "2026-03-01T00:00:00Z", "state": "running"})
        finished = threading.Timer(0.5, lambda: run_.update(state="success"))
        finished.start()
        try:
            assert run(DRIFT, in_flight_poll=0.05)["created"] is True
        finally:
            finished.cancel()
        looks = [r for r in api.requests if "/dagRuns?state=queued" in r["path"]]  # the in-flight looks
        creation = next(i for i, r in enumerate(api.requests) if r["method"] == "POST" and r["path"] == "/api/v2/backfills")
        assert len(looks) > 1, "the first look saw the run in flight"
        assert api.requests.index(looks[-1]) < creation
        assert "logical_date_gte=2026-02-26T00%3A00%3A00Z" in looks[0]["path"]

    def test_a_run_that_stays_in_flight_fails_the_try_and_creates_nothing(self, api):
        self.in_flight(api, "2026-02-26")
        with pytest.raises(
            MlopsError, match=r"runs of batch_score_churn over 2026-02-26..2026-02-28 are still in flight after 0 s \(scheduled__2026-02-26\); retry"
        ):
            run(DRIFT, in_flight_timeout=0.2, in_flight_poll=0.05)
        assert api.backfills == []

    def test_an_existing_backfill_is_returned_without_waiting(self, api):
        run(DRIFT)
        self.in_flight(api)
        assert run(DRIFT, in_flight_timeout=0)["created"] is False


class TestDaysTheBackfillLeftOut:
    """Seen in the demo on SQLite: POST /backfills answered 503 "database is locked" after committing the backfill, which
    never took over the day whose scheduled run had finished; the retry found the backfill and returned, and that day
    kept the old champion's scores."""

    def run_of(self, api, day, *, state="success", end_date="2026-03-01T00:00:00Z"):
        run = {"dag_id": "batch_score_churn", "dag_run_id": f"scheduled__{day}", "logical_date": f"{day}T00:00:00Z", "state": state, "end_date": end_date}
        api.dag_runs.append(run)
        return run

    def test_a_day_finished_before_the_backfill_is_run_again_and_a_missing_day_gets_a_run(self, api):
        api.left_out = {"2026-02-27", "2026-02-28"}  # the half-committed backfill took over 2026-02-26 only
        left_out = self.run_of(api, "2026-02-27")  # finished long before the backfill
        taken_over = self.run_of(api, "2026-02-26")
        first = run(DRIFT)
        assert api.cleared == [("batch_score_churn", left_out["dag_run_id"])]
        assert left_out["state"] == "queued"
        assert taken_over["state"] == "queued"
        missing = "rescore__2026-02-28__backfill1"
        assert first["rescored"] == [left_out["dag_run_id"], missing]
        assert [r["dag_run_id"] for r in api.dag_runs if r["logical_date"].startswith("2026-02-28")] == [missing]
        # A retry of the task changes nothing: the cleared run is queued, the missing day has its run.
        left_out.update(state="success", end_date=api.now())
        assert run(DRIFT)["rescored"] == []
        assert len(api.cleared) == 1

    def test_a_complete_backfill_is_left_alone(self, api):
        self.run_of(api, "2026-02-27")
        assert run(DRIFT)["rescored"] == []
        assert api.cleared == []
        assert sorted(r["state"] for r in api.dag_runs) == ["queued", "queued", "queued"]
