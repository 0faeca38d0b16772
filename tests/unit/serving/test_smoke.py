"""The smoke test's checks against a stand-in model server: each gate passes a good server and names a bad one."""

from __future__ import annotations

import threading
import time

import pytest
from fake_http import FakeServer, JsonHandler


class ModelServer(JsonHandler):
    """``/ping`` and ``/invocations`` as MLflow's scoring server answers them; ``predictions`` for every row."""

    predictions: list[float]
    delay: float = 0.0
    failing: bool = False

    def do_GET(self):
        self.reply(200 if self.path == "/ping" else 404, {})

    def do_POST(self):
        rows = len(self.body()["dataframe_split"]["data"])
        time.sleep(self.delay)  # the stand-in's latency, not a wait for an event
        if self.failing:
            return self.reply(500, {"error_code": "INTERNAL_ERROR"})
        return self.reply(200, {"predictions": self.predictions[:rows]})


@pytest.fixture
def rows():
    import pandas as pd

    return pd.DataFrame({"tenure_months": [1, 24, 60], "contract": ["month-to-month", "one-year", None]})


def smoke(server: FakeServer, rows, expected, **gates):
    from mlops_airflow.serving.smoke import smoke_test

    settings = {"burst": 5, "max_p95_ms": 2000.0, "max_error_rate": 0.0, "tolerance": 1e-9} | gates
    return smoke_test(server.url, rows, expected, **settings)


def test_a_server_that_answers_as_offline_passes(rows):
    with FakeServer(ModelServer, predictions=[0.0, 1.0, 1.0]) as server:
        result = smoke(server, rows, [0, 1, 1])
    assert (result.passed, result.problems, result.requests, result.errors) == (True, [], 5, 0)


def test_each_gate_names_its_problem(rows):
    with FakeServer(ModelServer, predictions=[0.0, 1.0, 0.0]) as server:
        assert smoke(server, rows, [0, 1, 1]).problems == [
            "golden rows: served predictions differ from the offline ones by up to 1 (tolerance 1e-09)",
            "burst: 5 of 5 answers differ from the offline predictions (tolerance 1e-09)",
        ]
    with FakeServer(ModelServer, predictions=[0.0, 1.0, 1.0], delay=0.25) as server:
        (problem,) = smoke(server, rows, [0, 1, 1], max_p95_ms=100.0).problems
    assert problem.startswith("burst: p95 latency ")
    assert problem.endswith(" ms with 1 in flight > 100 ms")
    with FakeServer(ModelServer, predictions=[0.0, 1.0, 1.0], failing=True) as server:
        problems = smoke(server, rows, [0, 1, 1]).problems
    assert problems[0] == "schema: /invocations answered 500 without a 'predictions' field"
    assert problems[1] == "burst: error rate 100.0% over 5 requests > 0.0%"


class FlakyUnderConcurrency(ModelServer):
    """Answers right when alone, wrong when another request is in flight (a batching bug); ``seen`` records the most in flight."""

    seen: dict
    lock = threading.Lock()

    def do_POST(self):
        with self.lock:
            self.seen["in_flight"] += 1
            self.seen["most"] = max(self.seen["most"], self.seen["in_flight"])
            crowded = self.seen["in_flight"] > 1
        try:
            rows = len(self.body()["dataframe_split"]["data"])
            time.sleep(0.05)  # the stand-in's latency: requests overlap
            return self.reply(200, {"predictions": [0.5] * rows if crowded else self.predictions[:rows]})
        finally:
            with self.lock:
                self.seen["in_flight"] -= 1


def test_the_burst_is_concurrent_and_every_answer_is_checked(rows):
    seen = {"in_flight": 0, "most": 0}
    with FakeServer(FlakyUnderConcurrency, predictions=[0.0, 1.0, 1.0], seen=seen) as server:
        result = smoke(server, rows, [0, 1, 1], burst=16, concurrency=8)
    assert seen["most"] >= 2  # requests were in flight together
    assert result.requests == 16
    (problem,) = [p for p in result.problems if p.startswith("burst: ") and "answers differ from the offline predictions" in p]
    assert not result.passed, problem
    assert result.p95_ms >= 50


def test_a_sequential_burst_of_a_correct_server_passes_and_a_concurrent_one_too(rows):
    for concurrency in (1, 8):
        with FakeServer(ModelServer, predictions=[0.0, 1.0, 1.0]) as server:
            result = smoke(server, rows, [0, 1, 1], burst=16, concurrency=concurrency)
        assert (result.passed, result.requests, result.errors) == (True, 16, 0)
