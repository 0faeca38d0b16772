"""The worker's ASGI app, called as uvicorn calls it: routes, refusals with Retry-After, timeouts, oversized bodies."""

from __future__ import annotations

import asyncio
import json

import pytest

from mlops_airflow.serving import scoring_app
from mlops_airflow.serving.micro_batching import Overloaded, ScoringResponse
from mlops_airflow.serving.scoring_app import ScoringApp


class FakeBatcher:
    """Answers with ``answer`` (a response, an exception to raise, or a number of seconds to sleep first)."""

    max_pending = 4

    def __init__(self, answer=None) -> None:
        self.answer = answer
        self.seen: list[tuple[bytes, str]] = []
        self.in_flight = self.refused = self.batches = 0
        self.closed = False

    async def score(self, body: bytes, content_type: str) -> ScoringResponse:
        self.seen.append((body, content_type))
        if isinstance(self.answer, BaseException):
            raise self.answer
        if isinstance(self.answer, float):
            await asyncio.sleep(self.answer)
        return ScoringResponse(200, b'{"predictions": [1]}')

    def close(self) -> None:
        self.closed = True


def call(app, method: str, path: str, body: bytes = b"", headers=((b"content-type", b"application/json"),), chunk: int = 0):
    """One request through the app: (status, headers, body)."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    messages = [{"type": "http.request", "body": part, "more_body": i < len(chunks) - 1} for i, part in enumerate(chunks)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path, "method": method, "headers": list(headers)}, receive, send))
    start, body_message = sent
    return start["status"], dict(start["headers"]), body_message["body"]


def make(answer=None, timeout: float = 5.0) -> tuple[ScoringApp, FakeBatcher]:
    batcher = FakeBatcher(answer)
    return ScoringApp(batcher, request_timeout=timeout, version="3.17.2"), batcher


class TestRoutes:
    @pytest.mark.parametrize("path", ["/ping", "/health"])
    def test_health_answers_like_mlflow(self, path):
        assert call(make()[0], "GET", path)[0::2] == (200, b"\n")

    def test_version(self):
        assert call(make()[0], "GET", "/version")[0::2] == (200, b"3.17.2")

    def test_invocations_hands_the_body_and_content_type_to_the_batcher(self):
        app, batcher = make()
        status, headers, body = call(app, "POST", "/invocations", b'{"dataframe_split": {}}', chunk=5)
        assert (status, body, headers[b"content-type"]) == (200, b'{"predictions": [1]}', b"application/json")
        assert batcher.seen == [(b'{"dataframe_split": {}}', "application/json")]

    def test_stats(self):
        assert json.loads(call(make()[0], "GET", "/stats")[2]) == {"in_flight": 0, "max_pending": 4, "refused": 0, "batches": 0}

    @pytest.mark.parametrize(("method", "path", "status"), [("GET", "/invocations", 405), ("POST", "/ping", 405), ("GET", "/nowhere", 404)])
    def test_wrong_method_or_path(self, method, path, status):
        assert call(make()[0], method, path)[0] == status


class TestRefusals:
    def test_overloaded_is_503_with_retry_after(self):
        app, _ = make(Overloaded("65 requests are waiting or running (at most 64)"))
        status, headers, body = call(app, "POST", "/invocations", b"{}")
        assert (status, headers[b"retry-after"]) == (503, b"1")
        assert json.loads(body) == {
            "error_code": "TEMPORARILY_UNAVAILABLE",
            "message": "overloaded, retry later: 65 requests are waiting or running (at most 64)",
        }

    def test_a_request_past_the_timeout_is_504(self):
        app, _ = make(answer=1.0, timeout=0.05)
        assert call(app, "POST", "/invocations", b"{}")[0::2] == (504, b"Request processing time exceeded limit")

    def test_an_oversized_body_is_413_and_never_scored(self, monkeypatch):
        monkeypatch.setattr(scoring_app, "MAX_BODY_BYTES", 10)
        app, batcher = make()
        status, _, body = call(app, "POST", "/invocations", b"x" * 30, chunk=4)
        assert status == 413
        assert "larger than 10 bytes" in json.loads(body)["message"]
        assert batcher.seen == []


def test_lifespan_shutdown_closes_the_batcher():
    app, batcher = make()
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert batcher.closed


class TestBeforeTheBody:
    def test_a_full_worker_refuses_before_reading_the_body(self):
        app, batcher = make()
        batcher.in_flight = batcher.max_pending
        status, headers, _ = call(app, "POST", "/invocations", b"{}")
        assert (status, headers[b"retry-after"], batcher.seen) == (503, b"1", [])

    def test_a_declared_length_past_the_limit_is_413_at_once(self, monkeypatch):
        monkeypatch.setattr(scoring_app, "MAX_BODY_BYTES", 10)
        app, batcher = make()
        headers = ((b"content-type", b"application/json"), (b"content-length", b"11"))
        assert call(app, "POST", "/invocations", b"x" * 11, headers=headers)[0] == 413
        assert batcher.seen == []


class RecordingLog:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def record(self, **row) -> bool:
        self.rows.append(row)
        return True

    def stats(self) -> dict[str, int]:
        return {"logged": len(self.rows)}


class TestInferenceLog:
    def make(self, answer=None):
        log = RecordingLog()
        return ScoringApp(FakeBatcher(answer), request_timeout=5.0, version="3.17.2", inference_log=log), log

    def test_an_answer_is_logged_with_its_request_and_the_clients_request_id(self):
        app, log = self.make()
        status, headers, _ = call(app, "POST", "/invocations", b'{"x": 1}', headers=((b"content-type", b"application/json"), (b"x-request-id", b"abc-1")))
        assert status == 200
        assert headers[b"x-request-id"] == b"abc-1"
        (row,) = log.rows
        assert (row["request_id"], row["status"], row["request"], row["response"], row["route"]) == (
            "abc-1",
            200,
            b'{"x": 1}',
            b'{"predictions": [1]}',
            "preview",
        )
        assert row["latency_ms"] >= 0
        assert row["content_type"] == "application/json"

    def test_traffic_through_the_live_url_is_marked_by_the_router_header(self):
        app, log = self.make()
        call(app, "POST", "/invocations", b"{}", headers=((b"content-type", b"application/json"), (b"x-mlops-route", b"live")))
        assert log.rows[0]["route"] == "live"
        assert len(log.rows[0]["request_id"]) == 32

    def test_a_refusal_is_logged_with_no_body(self):
        app, log = self.make()
        app.batcher.in_flight = app.batcher.max_pending
        assert call(app, "POST", "/invocations", b'{"x": 1}')[0] == 503
        assert (log.rows[0]["status"], log.rows[0]["request"]) == (503, b"")

    def test_stats_include_the_logs(self):
        app, _ = self.make()
        assert json.loads(call(app, "GET", "/stats")[2])["log_logged"] == 0
