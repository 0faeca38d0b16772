"""The smoke test's checks against a stand-in model server: each gate passes a good server and names a bad one."""

from __future__ import annotations

import threading
import time

import pytest
from fake_http import FakeServer, JsonHandler

TENURES = [1, 24, 60]


class ModelServer(JsonHandler):
    """``/ping`` and ``/invocations`` as MLflow's scoring server answers them: ``predictions`` of each row, by its tenure."""

    predictions: list[float]
    delay: float = 0.0
    failing: bool = False

    def do_GET(self):
        self.reply(200 if self.path == "/ping" else 404, {})

    def do_POST(self):
        split = self.body()["dataframe_split"]
        tenures = [row[split["columns"].index("tenure_months")] for row in split["data"]]
        time.sleep(self.delay)  # the stand-in's latency, not a wait for an event
        if self.failing:
            return self.reply(500, {"error_code": "INTERNAL_ERROR"})
        return self.reply(200, {"predictions": [self.predictions[TENURES.index(t)] for t in tenures]})


@pytest.fixture
def rows():
    import pandas as pd

    return pd.DataFrame({"tenure_months": TENURES, "contract": ["month-to-month", "one-year", None]})


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
            "burst: 3 of 5 answers differ from the offline predictions (tolerance 1e-09)",  # those with the third row
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
            split = self.body()["dataframe_split"]
            tenures = [row[split["columns"].index("tenure_months")] for row in split["data"]]
            time.sleep(0.05)  # the stand-in's latency: requests overlap
            return self.reply(200, {"predictions": [0.5] * len(tenures) if crowded else [self.predictions[TENURES.index(t)] for t in tenures]})
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


class SwapsAnswers(ModelServer):
    """Answers each request with the predictions of another request's rows (what a batching mix-up would do)."""

    def do_POST(self):
        split = self.body()["dataframe_split"]
        tenures = [row[split["columns"].index("tenure_months")] for row in split["data"]]
        if len(tenures) == 3:  # the golden-rows check, whole
            return self.reply(200, {"predictions": self.predictions})
        shifted = [self.predictions[(TENURES.index(t) + 1) % len(TENURES)] for t in tenures]
        return self.reply(200, {"predictions": shifted})


def test_an_answer_with_another_requests_rows_is_caught(rows):
    with FakeServer(SwapsAnswers, predictions=[0.0, 1.0, 0.5]) as server:
        result = smoke(server, rows, [0.0, 1.0, 0.5], burst=6, concurrency=3)
    assert result.problems == ["burst: 6 of 6 answers differ from the offline predictions (tolerance 1e-09)"]
