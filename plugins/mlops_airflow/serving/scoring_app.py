"""The ASGI app of one model-server worker: MLflow's scoring API over a :class:`MicroBatcher`.

The same routes and answers as MLflow's scoring server (``/ping``, ``/health``, ``/version``,
``/invocations`` with ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV and
Parquet), so clients do not change; plus ``/stats`` (this worker's counters, JSON). What differs is
under load: concurrent requests are scored in merged batches, and work past the worker's limits is
refused at once with ``503`` and ``Retry-After`` instead of waiting in a queue without bound.
A plain ASGI callable: a framework's routing would cost more than the scoring of a small request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.serving.inference_log import REQUEST_ID_HEADER, ROUTE_HEADER, ROUTE_LIVE, ROUTE_PREVIEW, request_id
from mlops_airflow.serving.micro_batching import MicroBatcher, Overloaded, ScoringResponse

if TYPE_CHECKING:
    from mlops_airflow.serving.inference_log import InferenceLog

RETRY_AFTER_SECONDS = 1
MAX_BODY_BYTES = 64 * 1024 * 1024


def _json(status: int, payload: dict[str, Any]) -> ScoringResponse:
    return ScoringResponse(status, json.dumps(payload).encode())


class ScoringApp:
    """
    :param batcher: scores the requests.
    :param request_timeout: seconds before an ``/invocations`` request is answered 504 (MLflow's default: 60).
    :param version: what ``/version`` answers (MLflow's version).
    :param inference_log: where every ``/invocations`` answer is recorded; ``None``: nowhere.
    """

    def __init__(self, batcher: MicroBatcher, *, request_timeout: float, version: str, inference_log: InferenceLog | None = None) -> None:
        self.batcher = batcher
        self.request_timeout = request_timeout
        self.version = version
        self.inference_log = inference_log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in ("/ping", "/health"):
            response = ScoringResponse(200, b"\n") if method in ("GET", "HEAD") else _json(405, {"message": "use GET"})
        elif path == "/version":
            response = ScoringResponse(200, self.version.encode()) if method == "GET" else _json(405, {"message": "use GET"})
        elif path == "/stats":
            response = _json(200, self.stats()) if method == "GET" else _json(405, {"message": "use GET"})
        elif path == "/invocations":
            if method == "POST":
                await self._logged_invocations(scope, receive, send)
                return
            response = _json(405, {"message": "use POST"})
        else:
            response = _json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no route {path}"})
        await _send(send, response)

    def stats(self) -> dict[str, int]:
        batcher = self.batcher
        counters = {"in_flight": batcher.in_flight, "max_pending": batcher.max_pending, "refused": batcher.refused, "batches": batcher.batches}
        if self.inference_log is not None:
            counters.update({f"log_{name}": value for name, value in self.inference_log.stats().items()})
        return counters

    async def _logged_invocations(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer, with the request's id in ``X-Request-Id``, then record it in the inference log."""
        arrived, started = time.time(), time.perf_counter()
        headers = dict(scope["headers"])
        rid = request_id(headers)
        body = bytearray()
        response = await self._invocations(headers, receive, body)
        await _send(send, response, [(REQUEST_ID_HEADER.encode(), rid.encode())])
        if self.inference_log is not None:
            self.inference_log.record(
                arrived=arrived,
                request_id=rid,
                status=response.status,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                content_type=headers.get(b"content-type", b"").decode("latin-1"),
                route=ROUTE_LIVE if headers.get(ROUTE_HEADER.encode()) == ROUTE_LIVE.encode() else ROUTE_PREVIEW,
                request=bytes(body),
                response=response.body,
            )

    async def _invocations(self, headers: dict[bytes, bytes], receive: Any, received: bytearray) -> ScoringResponse:
        """The answer to one request; its body, once read, is left in ``received``."""
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if self.batcher.in_flight >= self.batcher.max_pending:  # refused before its body is read
            return _overloaded(f"{self.batcher.in_flight} requests are waiting or running (at most {self.batcher.max_pending})")
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _too_large()
        body = await _read_body(receive)
        if body is None:
            return _too_large()
        received += body
        try:
            return await asyncio.wait_for(self.batcher.score(body, content_type), timeout=self.request_timeout)
        except Overloaded as err:
            return _overloaded(str(err))
        except TimeoutError:
            return ScoringResponse(504, b"Request processing time exceeded limit")

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.inference_log is not None:
                    self.inference_log.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.batcher.close()
                if self.inference_log is not None:  # after the requests in flight: every answer is written
                    await asyncio.get_running_loop().run_in_executor(None, self.inference_log.close)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _overloaded(why: str) -> ScoringResponse:
    return ScoringResponse(
        503, json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": f"overloaded, retry later: {why}"}).encode(), retry_after=RETRY_AFTER_SECONDS
    )


def _too_large() -> ScoringResponse:
    return _json(413, {"error_code": "BAD_REQUEST", "message": f"the request body is larger than {MAX_BODY_BYTES} bytes"})


async def _read_body(receive: Any) -> bytes | None:
    """The whole request body; ``None`` past :data:`MAX_BODY_BYTES`."""
    parts, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _send(send: Any, response: ScoringResponse, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    headers = [(b"content-type", response.content_type.encode()), (b"content-length", str(len(response.body)).encode()), *extra_headers]
    if response.retry_after is not None:
        headers.append((b"retry-after", str(response.retry_after).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
