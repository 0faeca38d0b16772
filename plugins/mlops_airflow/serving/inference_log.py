"""The inference log: every request a colour's model server answers, kept as daily Parquet partitions.

Where it sits in the loop: each worker of a model server (:mod:`mlops_airflow.serving.model_server`)
records its ``/invocations`` answers here; canary analysis and shadow replay
(:mod:`mlops_airflow.operators.release_strategies`) read them back, and so can monitoring on live traffic.

Layout: ``<uri>/dt=YYYY-MM-DD/<colour>-v<version>-<host>-<pid>-<seq>-<nonce>.parquet``, the same daily
partitions as the model's data (``<data uri>/_inference_log`` by default: readers of the data skip
``_`` folders). One row per request: when it arrived (UTC), its id (the client's ``X-Request-Id`` or
a new one, sent back in the answer), the model, version and colour that answered, the status, the
latency, and the request and response bodies as sent. A request refused before its body was read (503
under overload) is logged with an empty body: it counts in the error rate.

Cost on the request path: a tuple appended to a list. A thread writes the buffer every
``flush_seconds`` (and at once when it holds ``flush_rows``), each file whole or not at all
(:func:`mlops_airflow.core.partitions.write_partition`: a hidden temporary file, then a rename;
one PUT on object storage). Memory stays bounded: past ``max_buffer_rows`` or ``max_buffer_bytes``
waiting to be written, a row is dropped and counted (``/stats``), never queued. A graceful stop (the
server's SIGTERM, uvicorn's shutdown after the requests in flight) writes what is left: nothing
answered is lost. A write that fails keeps its rows for the next try. Nothing here imports Airflow.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

REQUEST_ID_HEADER = "x-request-id"
# Set by the live URL's router on every request it forwards: what came through the live URL is
# "live"; what a colour's own (preview) URL got directly (the smoke test, a shadow replay) is "preview".
ROUTE_HEADER = "x-mlops-route"
ROUTE_LIVE = "live"
ROUTE_PREVIEW = "preview"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DEFAULT_FLUSH_SECONDS = 2.0
DEFAULT_FLUSH_ROWS = 10_000
DEFAULT_MAX_BUFFER_ROWS = 100_000
DEFAULT_MAX_BUFFER_BYTES = 128 * 1024 * 1024

URI_ENV = "MLOPS_INFERENCE_LOG_URI"
SAMPLE_RATE_ENV = "MLOPS_INFERENCE_LOG_SAMPLE_RATE"
FLUSH_SECONDS_ENV = "MLOPS_INFERENCE_LOG_FLUSH_SECONDS"

COLUMNS = ("ts", "request_id", "model", "version", "color", "route", "status", "latency_ms", "content_type", "request", "response")


def request_id(headers: dict[bytes, bytes]) -> str:
    """The client's ``X-Request-Id`` when it is a plain token (at most 128 characters), else a new one."""
    given = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


@dataclass(frozen=True)
class InferenceLogSettings:
    """Where a colour's server logs and how much: ``serving.inference_log`` of the spec."""

    uri: str
    sample_rate: float = 1.0
    flush_seconds: float = DEFAULT_FLUSH_SECONDS

    def __post_init__(self) -> None:
        if not self.uri or not 0.0 < self.sample_rate <= 1.0 or not self.flush_seconds > 0:
            raise ValueError(f"an inference log needs a uri, a sample rate in (0, 1] and flush seconds above 0: {self}")

    def environment(self) -> dict[str, str]:
        """The same settings as the server's environment variables (what a container or pod gets)."""
        return {URI_ENV: self.uri, SAMPLE_RATE_ENV: f"{self.sample_rate:g}", FLUSH_SECONDS_ENV: f"{self.flush_seconds:g}"}

    def arguments(self) -> list[str]:
        return ["--inference-log", self.uri, "--inference-log-sample-rate", f"{self.sample_rate:g}", "--inference-log-flush-seconds", f"{self.flush_seconds:g}"]


def model_and_version(model_uri: str) -> tuple[str, str]:
    """``models:/churn/3`` -> ``("churn", "3")``; another URI's parts are unknown."""
    match = re.fullmatch(r"models:/([^/]+)/([^/@]+)", model_uri)
    return (match.group(1), match.group(2)) if match else ("unknown", "unknown")


class InferenceLog:
    """
    One worker's log writer.

    :param settings: where and how much.
    :param model: the registered model's name.
    :param version: the version this server runs.
    :param color: the colour this server is.
    :param flush_rows: this many rows waiting wake the writing thread before its time.
    :param max_buffer_rows: the most rows waiting to be written; one more is dropped.
    :param max_buffer_bytes: likewise in bytes of bodies.
    :param sample: a uniform draw in [0, 1), for tests.
    """

    def __init__(
        self,
        settings: InferenceLogSettings,
        *,
        model: str,
        version: str,
        color: str,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        max_buffer_rows: int = DEFAULT_MAX_BUFFER_ROWS,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.model, self.version, self.color = model, version, color
        self.flush_rows = flush_rows
        self.max_buffer_rows = max_buffer_rows
        self.max_buffer_bytes = max_buffer_bytes
        self.sample = sample
        self.writer = f"{color}-v{version}-{socket.gethostname()}-{os.getpid()}"
        self.buffer: list[tuple] = []
        self.buffer_bytes = 0
        self.logged = 0  # rows taken into the buffer
        self.written = 0  # rows in files
        self.dropped = 0  # rows refused because the buffer was full
        self.sampled_out = 0
        self.write_errors = 0
        self.files = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()  # one write at a time: the thread's and close()'s

    def record(
        self, *, arrived: float, request_id: str, status: int, latency_ms: float, content_type: str, request: bytes, response: bytes, route: str = ROUTE_PREVIEW
    ) -> bool:
        """Take one answered request (on the event loop: no I/O here); ``False`` when sampled out or dropped."""
        if self.settings.sample_rate < 1.0 and self.sample() >= self.settings.sample_rate:
            self.sampled_out += 1
            return False
        size = len(request) + len(response) + 128
        with self._lock:
            if len(self.buffer) >= self.max_buffer_rows or self.buffer_bytes + size > self.max_buffer_bytes:
                self.dropped += 1
                return False
            self.buffer.append((arrived, request_id, status, latency_ms, content_type, request, response, route))
            self.buffer_bytes += size
            self.logged += 1
            full = len(self.buffer) >= self.flush_rows
        if full:
            self._wake.set()
        return True

    def stats(self) -> dict[str, int]:
        return {"logged": self.logged, "written": self.written, "dropped": self.dropped, "sampled_out": self.sampled_out, "write_errors": self.write_errors}

    @staticmethod
    def load_writer() -> None:
        """Import the Parquet writer now: the first write would otherwise import it (near a second here) while holding
        the interpreter lock the request loop needs. The model server calls it before it forks its workers."""
        import pyarrow.compute
        import pyarrow.parquet  # noqa: F401

        from mlops_airflow.core.partitions import write_partition  # noqa: F401

    def start(self) -> None:
        """Start the writing thread (in the worker process: threads do not survive a fork)."""
        self.load_writer()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.flush_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.flush()

    def close(self, timeout: float = 10.0) -> int:
        """Stop the thread and write what is left; the rows written by this call."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.flush()

    def flush(self) -> int:
        """Write the buffered rows, one file per day they fall on; on failure they stay for the next try."""
        with self._write_lock:
            with self._lock:
                rows, self.buffer = self.buffer, []
                self.buffer_bytes = 0
            if not rows:
                return 0
            by_day: dict[dt.date, list[tuple]] = {}
            for row in rows:
                by_day.setdefault(dt.datetime.fromtimestamp(row[0], dt.UTC).date(), []).append(row)
            done = 0
            for day, day_rows in sorted(by_day.items()):
                try:
                    self._write(day, day_rows)
                except Exception as err:  # the storage is down or full: keep the rows not written (within the bounds) and say so
                    self.write_errors += 1
                    unwritten = [r for d, rs in sorted(by_day.items()) if d >= day for r in rs]
                    print(f"inference log: cannot write {len(unwritten)} rows: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                    with self._lock:
                        self.buffer = unwritten + self.buffer
                        self.buffer_bytes += sum(len(r[5]) + len(r[6]) + 128 for r in unwritten)
                        excess = 0  # the oldest go first when the outage outlasts the room (rows or bytes)
                        while excess < len(self.buffer) and (len(self.buffer) - excess > self.max_buffer_rows or self.buffer_bytes > self.max_buffer_bytes):
                            self.buffer_bytes -= len(self.buffer[excess][5]) + len(self.buffer[excess][6]) + 128
                            excess += 1
                        del self.buffer[:excess]
                        self.dropped += excess
                    break
                done += len(day_rows)
            self.written += done
            return done

    def _write(self, day: dt.date, rows: list[tuple]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        from mlops_airflow.core.partitions import write_partition

        arrived, ids, statuses, latencies, content_types, requests, responses, routes = zip(*rows, strict=True)
        # Built column by column in Arrow's C++ (this thread holds the GIL the request loop needs: no Python loop per row).
        microseconds = pc.cast(pc.multiply(pa.array(arrived, pa.float64()), 1_000_000.0), pa.int64(), safe=False)
        table = pa.table(
            {
                "ts": microseconds.cast(pa.timestamp("us", tz="UTC")),
                "request_id": pa.array(ids, pa.string()),
                "model": pa.array([self.model] * len(rows), pa.string()),
                "version": pa.array([self.version] * len(rows), pa.string()),
                "color": pa.array([self.color] * len(rows), pa.string()),
                "route": pa.array(routes, pa.string()),
                "status": pa.array(statuses, pa.int16()),
                "latency_ms": pa.array(latencies, pa.float32()),
                "content_type": pa.array(content_types, pa.string()),
                "request": pa.array(requests, pa.binary()),
                "response": pa.array(responses, pa.binary()),
            }
        )
        self.files += 1
        write_partition(table, self.settings.uri, day, filename=f"{self.writer}-{self.files:06d}-{uuid.uuid4().hex[:8]}.parquet")
