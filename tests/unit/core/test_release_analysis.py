"""Verdicts on live traffic: a canary step's and a shadow replay's, from inference-log rows."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.core.release_analysis import (
    CanaryCriteria,
    Replayed,
    ShadowCriteria,
    TrafficSample,
    Verdict,
    agreeing_rows,
    analyse_canary_step,
    judge_shadow,
    output_shift,
    predicted_classes,
    scores,
)

CRITERIA = CanaryCriteria(max_error_rate=0.01, max_p95_ms=100.0, max_output_shift=0.2, min_requests=50)
T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def answer(*positives: float) -> bytes:
    return json.dumps({"predictions": [[1 - p, p] for p in positives]}).encode()


def sample(requests: int, *, errors: int = 0, latency: float = 10.0, score=lambda i: 0.3 + (i % 40) / 100) -> TrafficSample:
    rows = [{"status": 500 if i < errors else 200, "latency_ms": latency, "response": answer(score(i)) if i >= errors else b""} for i in range(requests)]
    return TrafficSample.from_log(pd.DataFrame(rows, columns=["status", "latency_ms", "response"]))


def step(baseline: TrafficSample, candidate: TrafficSample, criteria: CanaryCriteria = CRITERIA):
    return analyse_canary_step(baseline, candidate, criteria, step=1, weight=10, started=T0, ended=T0 + dt.timedelta(minutes=5))


class TestScores:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            pytest.param(answer(0.8, 0.1), [0.8, 0.1], id="probabilities-last-class"),
            pytest.param(b'{"predictions": [1.5, 2]}', [1.5, 2.0], id="numbers"),
            pytest.param(b'{"predictions": [true, "a"]}', [], id="not-numbers"),
            pytest.param(b"not json", [], id="not-json"),
            pytest.param(b'{"error_code": "BAD_REQUEST"}', [], id="an-error"),
            pytest.param(b'{"predictions": {"a": [1]}}', [], id="a-frame"),
        ],
    )
    def test_one_number_per_row(self, body, expected):
        assert scores(body) == expected

    def test_predicted_classes(self):
        assert predicted_classes(answer(0.8, 0.1)) == [1, 0]
        assert predicted_classes(b'{"predictions": [3, 4]}') == [3, 4]


class TestCanaryStep:
    def test_a_healthy_step_with_enough_traffic_is_successful(self):
        analysis = step(sample(500), sample(60))
        assert analysis.verdict is Verdict.SUCCESSFUL
        assert analysis.reasons == ()
        assert (analysis.requests, analysis.errors, analysis.error_rate, analysis.baseline_requests) == (60, 0, 0.0, 500)

    def test_too_few_answers_is_inconclusive(self):
        analysis = step(sample(500), sample(49))
        assert analysis.verdict is Verdict.INCONCLUSIVE
        assert "49 answers" in analysis.reasons[0]

    def test_errors_past_the_rate_fail(self):
        analysis = step(sample(500), sample(100, errors=2))
        assert analysis.verdict is Verdict.FAILED
        assert "error rate 2/100" in analysis.reasons[0]

    def test_errors_no_later_answer_can_excuse_fail_before_min_requests(self):
        """1% of 50 allows half an error: one error in 10 answers already fails."""
        assert step(sample(500), sample(10, errors=1)).verdict is Verdict.FAILED

    def test_errors_within_the_rate_pass(self):
        lenient = CanaryCriteria(max_error_rate=0.05, max_p95_ms=100.0, max_output_shift=0.2, min_requests=50)
        assert step(sample(500), sample(100, errors=2), lenient).verdict is Verdict.SUCCESSFUL

    def test_slow_answers_fail(self):
        analysis = step(sample(500), sample(60, latency=150.0))
        assert analysis.verdict is Verdict.FAILED
        assert "p95 latency 150.0 ms" in analysis.reasons[0]

    def test_a_large_significant_output_shift_fails(self):
        analysis = step(sample(500), sample(200, score=lambda i: 0.9))
        assert analysis.verdict is Verdict.FAILED
        assert "KS D" in analysis.reasons[0]
        assert analysis.output_shift == pytest.approx(1.0)
        assert analysis.output_shift_p_value < 0.01

    def test_a_large_shift_on_too_few_scores_to_be_significant_does_not_fail(self):
        rng = np.random.default_rng(0)
        baseline_scores = rng.uniform(size=500)
        candidate_scores = rng.uniform(size=25)
        baseline = sample(500, score=lambda i: float(baseline_scores[i]))
        candidate = sample(25, score=lambda i: float(candidate_scores[i]))
        shift = output_shift(baseline.scores, candidate.scores)
        assert shift is not None
        assert shift[1] > 0.01
        loose = CanaryCriteria(max_error_rate=0.01, max_p95_ms=100.0, max_output_shift=0.0, min_requests=20)
        assert step(baseline, candidate, loose).verdict is Verdict.SUCCESSFUL

    def test_no_traffic_at_all_is_inconclusive_not_a_crash(self):
        empty = TrafficSample.from_log(pd.DataFrame(columns=["status", "latency_ms", "response"]))
        analysis = step(empty, empty)
        assert analysis.verdict is Verdict.INCONCLUSIVE
        assert analysis.p95_ms is None
        assert analysis.output_shift is None

    def test_the_record_round_trips(self):
        analysis = step(sample(500), sample(100, errors=2))
        assert type(analysis).from_dict(json.loads(json.dumps(analysis.as_dict()))) == analysis


def replayed(live: bytes, shadow: bytes, status: int = 200, latency: float = 5.0) -> Replayed:
    return Replayed(live_response=live, status=status, response=shadow, latency_ms=latency)


SHADOW = ShadowCriteria(min_requests=3, min_agreement=0.9, max_error_rate=0.0, max_p95_ms=100.0)


class TestShadow:
    def test_rows_agree_on_the_predicted_class(self):
        assert agreeing_rows(answer(0.8, 0.2), answer(0.6, 0.7), tolerance=0.0) == (1, 2)

    def test_numbers_agree_within_the_tolerance(self):
        assert agreeing_rows(b'{"predictions": [1.0, 2.0]}', b'{"predictions": [1.0005, 3.0]}', tolerance=0.001) == (1, 2)

    def test_answers_of_different_lengths_agree_on_nothing(self):
        assert agreeing_rows(answer(0.8, 0.2), answer(0.8), tolerance=0.0) == (0, 2)

    def test_a_faithful_replay_is_successful(self):
        report = judge_shadow(4, [replayed(answer(0.8), answer(0.7))] * 4, SHADOW, tolerance=0.0)
        assert report.verdict is Verdict.SUCCESSFUL
        assert report.agreement == 1.0
        assert (report.logged, report.replayed, report.answered, report.errors, report.rows_compared) == (4, 4, 4, 0, 4)

    def test_disagreement_fails(self):
        report = judge_shadow(4, [replayed(answer(0.8), answer(0.2))] * 3 + [replayed(answer(0.8), answer(0.9))], SHADOW, tolerance=0.0)
        assert report.verdict is Verdict.FAILED
        assert report.agreement == 0.25

    def test_an_unanswered_request_fails(self):
        report = judge_shadow(3, [replayed(answer(0.8), answer(0.8))] * 2 + [replayed(answer(0.8), b"", status=0)], SHADOW, tolerance=0.0)
        assert report.verdict is Verdict.FAILED
        assert report.errors == 1

    def test_a_new_version_that_turns_requests_down_fails(self):
        report = judge_shadow(3, [replayed(answer(0.8), b'{"error_code": "BAD_REQUEST"}', status=400)] * 3, SHADOW, tolerance=0.0)
        assert report.verdict is Verdict.FAILED
        assert report.errors == 3

    def test_too_little_logged_traffic_is_inconclusive(self):
        report = judge_shadow(2, [replayed(answer(0.8), answer(0.8))] * 2, SHADOW, tolerance=0.0)
        assert report.verdict is Verdict.INCONCLUSIVE
