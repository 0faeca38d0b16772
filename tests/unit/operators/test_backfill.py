"""BackfillScoresOperator against a small stand-in for Airflow's REST API (the real one: tests/e2e)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.operators.backfill import BackfillScoresOperator

DRIFT = {"backfill_start": "2026-02-26", "backfill_end": "2026-02-28", "onset": "2026-02-26"}


class FakeAirflowApi(BaseHTTPRequestHandler):
    backfills: list[dict] = []
    refuse: bool = False
    busy: int = 0  # answer this many backfill requests with 503, as Airflow on a locked SQLite does
    tokens: list[str] = []

    def _reply(self, status, body):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_POST(self):
        if self.path == "/auth/token":
            body = self._body()
            if (body["username"], body["password"]) != ("pipeline", "s3cret"):
                return self._reply(401, {"detail": "bad credentials"})
            return self._reply(201, {"access_token": "token-1"})
        if self.headers.get("Authorization") != "Bearer token-1":
            return self._reply(401, {"detail": "no token"})
        if self.path == "/api/v2/backfills":
            if type(self).busy:
                type(self).busy -= 1
                return self._reply(503, {"detail": "Database is locked. Backfill creation is not supported on SQLite under concurrent access."})
            if type(self).refuse:
                return self._reply(409, {"detail": "There is already a running backfill for dag batch_score_churn"})
            body = self._body()
            backfill = {"id": len(type(self).backfills) + 1, **{k: body[k] for k in ("dag_id", "reprocess_behavior")}}
            backfill.update(from_date=f"{body['from_date']}T00:00:00Z", to_date=f"{body['to_date']}T00:00:00Z")
            type(self).backfills.append(backfill)
            return self._reply(200, backfill)
        return self._reply(404, {})

    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer token-1":
            return self._reply(401, {"detail": "no token"})
        if self.path.startswith("/api/v2/backfills?dag_id=batch_score_churn"):
            return self._reply(200, {"backfills": type(self).backfills, "total_entries": len(type(self).backfills)})
        return self._reply(404, {})

    def log_message(self, *args):
        pass


@pytest.fixture
def api(monkeypatch):
    FakeAirflowApi.backfills, FakeAirflowApi.refuse, FakeAirflowApi.busy = [], False, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAirflowApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": server.server_port, "login": "pipeline", "password": "s3cret"}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps(connection))
    yield FakeAirflowApi
    server.shutdown()


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
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "login": "a", "password": "b"}))
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
