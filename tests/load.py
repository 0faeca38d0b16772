"""A small load generator for the serving tests: clients on threads, with kept-alive connections or a connection per request.

Every answer is kept (status, latency, body, Retry-After), so a test can check each one; throughput and
latency figures are printed for the record, never asserted (that is the benchmark's business).
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    client: str  # "keep-alive" or "per-request"
    request: int  # which of the bodies was sent
    status: int  # 0: no answer (refused, reset, timed out)
    sent: float  # perf_counter
    answered: float
    body: bytes
    retry_after: str | None


class Load:
    """``keep_alive`` + ``per_request`` clients sending ``bodies`` round-robin to ``url``/invocations until :meth:`stop`; ``pause`` between requests."""

    def __init__(self, url: str, bodies: list[bytes], *, keep_alive: int = 4, per_request: int = 2, timeout: float = 10.0, pause: float = 0.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.bodies = bodies
        self.timeout = timeout
        self.pause = pause  # seconds each client waits between two requests: steady traffic that leaves the CPUs to the rest
        self.answers: list[Answer] = []
        self._next = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(True,), daemon=True) for _ in range(keep_alive)]
        self._threads += [threading.Thread(target=self._client, args=(False,), daemon=True) for _ in range(per_request)]
        self.started = self.ended = 0.0

    def __enter__(self) -> Load:
        self.started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        self.ended = self.ended or time.perf_counter()
        return self.answers

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` answers have arrived in all."""
        deadline = time.monotonic() + timeout
        while len(self.answers) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.answers)} answers, not {count}, within {timeout:.0f} s")
            time.sleep(0.01)

    def _client(self, keep_alive: bool) -> None:
        connection = None
        kind = "keep-alive" if keep_alive else "per-request"
        while not self._stop.is_set():
            index = next(self._next) % len(self.bodies)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            headers = {"Content-Type": "application/json"}
            if not keep_alive:
                headers["Connection"] = "close"
            sent = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body=self.bodies[index], headers=headers)
                response = connection.getresponse()
                body = response.read()
                answer = Answer(kind, index, response.status, sent, time.perf_counter(), body, response.getheader("Retry-After"))
                if not keep_alive or response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                answer = Answer(kind, index, 0, sent, time.perf_counter(), b"", None)
                connection.close()
                connection = None
            self.answers.append(answer)
            if self.pause:
                self._stop.wait(self.pause)
        if connection is not None:
            connection.close()

    def summary(self) -> str:
        elapsed = (self.ended or time.perf_counter()) - self.started
        latencies = sorted(a.answered - a.sent for a in self.answers)
        p95 = latencies[int(0.95 * len(latencies))] * 1000 if latencies else 0.0
        statuses = sorted({a.status for a in self.answers})
        return f"{len(self.answers)} requests in {elapsed:.1f} s ({len(self.answers) / max(elapsed, 1e-9):.0f}/s), statuses {statuses}, p95 {p95:.0f} ms"
