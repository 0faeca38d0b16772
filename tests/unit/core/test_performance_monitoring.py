"""mlops_airflow.core.performance_monitoring: joining late labels, and the decay judgement on a bootstrap bound."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.core.performance_monitoring import (
    Baseline,
    PerformanceInputError,
    baseline_from_frame,
    day_performance,
    join_labels,
    judge_decay,
    segment_metrics,
)
from mlops_airflow.specs import PerformanceSpec

DAY = dt.date(2026, 3, 1)
SPEC = PerformanceSpec(labels_uri="file:///labels", key="id", floor=0.7, max_drop=0.05, bootstrap_resamples=300, min_labelled_rows=200)


def scored(rows: int, *, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores whose ROC AUC grows with ``separation`` (0: chance)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    scores = 1.0 / (1.0 + np.exp(-(separation * (labels - 0.5) + rng.normal(size=rows))))
    return labels, scores


class TestJoinLabels:
    def predictions(self):
        return pd.DataFrame({"id": ["a", "b", "c"], "probability_0": [0.8, 0.4, 0.1], "probability_1": [0.2, 0.6, 0.9]})

    def test_keeps_the_labelled_rows_whatever_order_the_labels_came_in(self):
        labels = pd.DataFrame({"id": ["c", "a", "zz"], "churned": [1, 0, 1]})
        joined = join_labels(self.predictions(), labels, key="id", target="churned", classes=(0, 1), day=DAY)
        assert joined.set_index("id")[["score", "label"]].to_dict("index") == {"a": {"score": 0.2, "label": 0}, "c": {"score": 0.9, "label": 1}}

    def test_a_key_given_two_labels_is_refused_naming_the_day_and_the_key(self):
        labels = pd.DataFrame({"id": ["a", "a", "b"], "churned": [0, 1, 1]})
        with pytest.raises(PerformanceInputError, match=r"2026-03-01: 2 label rows give one key different labels .*'a'"):
            join_labels(self.predictions(), labels, key="id", target="churned", classes=(0, 1), day=DAY)

    def test_a_label_delivered_twice_counts_once(self):
        labels = pd.DataFrame({"id": ["a", "a", "b"], "churned": [1, 1, 0]})
        joined = join_labels(self.predictions(), labels, key="id", target="churned", classes=(0, 1), day=DAY)
        assert joined["id"].tolist() == ["a", "b"]

    @pytest.mark.parametrize(
        ("labels", "problem"),
        [
            (pd.DataFrame({"id": ["a"], "churned": ["yes"]}), r"the labels' churned: 1 values are not one of the classes \[0, 1\] \(for example 'yes'\)"),
            (pd.DataFrame({"id": ["a"], "churned": [2]}), "not one of the classes"),
            (pd.DataFrame({"id": [1], "churned": [1]}), "the key 'id' is object in the predictions but int64 in the labels"),
        ],
    )
    def test_labels_that_do_not_fit_are_refused_with_the_day(self, labels, problem):
        with pytest.raises(PerformanceInputError, match=f"2026-03-01: .*{problem}"):
            join_labels(self.predictions(), labels, key="id", target="churned", classes=(0, 1), day=DAY)

    def test_a_score_that_is_not_a_number_is_refused(self):
        predictions = self.predictions().assign(probability_1=[0.2, float("nan"), 0.9])
        labels = pd.DataFrame({"id": ["a", "b"], "churned": [0, 1]})
        with pytest.raises(PerformanceInputError, match="2026-03-01: the predictions' probability_1: 1 of 2 are not finite numbers"):
            join_labels(predictions, labels, key="id", target="churned", classes=(0, 1), day=DAY)

    @pytest.mark.parametrize(("side", "column"), [("predictions", "id"), ("labels", "id"), ("labels", "churned")])
    def test_a_missing_column_is_named(self, side, column):
        predictions, labels = self.predictions(), pd.DataFrame({"id": ["a"], "churned": [1]})
        frames = {"predictions": predictions, "labels": labels}
        frames[side] = frames[side].drop(columns=[column])
        with pytest.raises(PerformanceInputError, match=f"the {side} have no column '{column}'"):
            join_labels(frames["predictions"], frames["labels"], key="id", target="churned", classes=(0, 1), day=DAY)

    def test_a_missing_label_value_is_not_a_label(self):
        labels = pd.DataFrame({"id": ["a", "b"], "churned": [1.0, None]})
        joined = join_labels(self.predictions(), labels, key="id", target="churned", classes=(0, 1), day=DAY)
        assert joined["id"].tolist() == ["a"]


class TestJudgeDecay:
    def baseline(self) -> Baseline:
        labels, scores = scored(3000, separation=2.5, seed=1)
        return Baseline(labels=labels, scores=scores)

    def test_a_clear_drop_beyond_the_margin_is_decay(self):
        labels, scores = scored(3000, separation=1.2, seed=2)
        verdict = judge_decay(labels, scores, self.baseline(), SPEC)
        assert verdict.decayed
        assert verdict.drop_lower > SPEC.max_drop
        assert verdict.baseline - verdict.realized > 0.1
        assert any("dropped" in reason for reason in verdict.reasons)

    def test_the_same_model_on_new_rows_is_not_decay(self):
        labels, scores = scored(3000, separation=2.5, seed=3)
        verdict = judge_decay(labels, scores, self.baseline(), SPEC)
        assert not verdict.decayed, verdict.reasons
        assert verdict.drop_lower <= SPEC.max_drop

    def test_a_small_window_with_a_large_point_drop_is_not_yet_decay(self):
        """200 rows: the point estimate falls by more than the margin, but the bound does not clear it."""
        labels, scores = scored(200, separation=1.6, seed=4)
        verdict = judge_decay(labels, scores, self.baseline(), dataclasses.replace(SPEC, floor=None))
        assert verdict.baseline - verdict.realized > SPEC.max_drop
        assert not verdict.decayed
        assert verdict.drop_lower <= SPEC.max_drop

    def test_below_the_floor_is_decay_without_a_baseline(self):
        labels, scores = scored(3000, separation=0.5, seed=5)
        verdict = judge_decay(labels, scores, None, SPEC)
        assert verdict.decayed
        assert verdict.realized_upper < SPEC.floor
        assert verdict.baseline is None
        assert any("judged on the floor only" in reason for reason in verdict.reasons)
        # With neither a floor nor a baseline nothing could be decay, and the reason says so.
        verdict = judge_decay(labels, scores, None, dataclasses.replace(SPEC, floor=None))
        assert not verdict.decayed
        assert "no verdict possible (no floor either)" in verdict.reasons[-1]

    def test_too_few_labelled_rows_give_no_verdict(self):
        labels, scores = scored(199, separation=0.0, seed=6)
        verdict = judge_decay(labels, scores, self.baseline(), SPEC)
        assert not verdict.decayed
        assert verdict.reasons == ("199 labelled predictions in the window; a verdict needs 200",)

    def test_a_baseline_of_one_class_leaves_the_floor_to_judge(self):
        labels, scores = scored(1000, separation=2.5, seed=10)
        baseline = Baseline(labels=np.ones(500, dtype=int), scores=np.linspace(0, 1, 500))
        verdict = judge_decay(labels, scores, baseline, SPEC)
        assert not verdict.decayed
        assert "undefined on the champion's validation scores" in verdict.reasons[-1]
        assert verdict.as_dict()["baseline"] is None

    def test_one_class_only_gives_no_verdict(self):
        verdict = judge_decay(np.zeros(500, dtype=int), np.linspace(0, 1, 500), self.baseline(), SPEC)
        assert not verdict.decayed
        assert "undefined" in verdict.reasons[0]


def test_baseline_from_the_validation_scores_and_its_errors():
    frame = pd.DataFrame({"label": [0, 1, 1], "probability_0": [0.9, 0.3, 0.2], "probability_1": [0.1, 0.7, 0.8], "contract": ["a", "b", "a"]})
    baseline = baseline_from_frame(frame, classes=(0, 1))
    assert baseline.labels.tolist() == [0, 1, 1]
    assert baseline.scores.tolist() == [0.1, 0.7, 0.8]
    with pytest.raises(PerformanceInputError, match=r"lack the columns \['probability_1'\]"):
        baseline_from_frame(frame.drop(columns=["probability_1"]), classes=(0, 1))
    with pytest.raises(PerformanceInputError, match="not finite"):
        baseline_from_frame(frame.assign(probability_1=[0.1, np.nan, 0.8]), classes=(0, 1))
    with pytest.raises(PerformanceInputError, match="not one of the classes"):
        baseline_from_frame(frame.assign(label=[0, 1, 7]), classes=(0, 1))


def test_a_day_without_labels_has_estimates_and_a_prediction_shift_only():
    from mlops_airflow.stats.performance_estimation import ScoreCalibration

    labels, scores = scored(2000, separation=2.0, seed=7)
    baseline = Baseline(labels=labels, scores=scores)
    calibration = ScoreCalibration(scores, labels)
    _, shifted = scored(1000, separation=2.0, seed=8)
    day = day_performance(DAY, np.clip(shifted + 0.3, 0, 1), None, baseline=baseline, calibration=calibration)
    assert day.realized is None
    assert day.concept_drift is None
    assert day.labelled == 0
    assert day.prediction_shift > 0.3
    assert day.prediction_shift_p_value < 1e-6
    assert 0.5 < day.estimated["roc_auc"] < 1.0
    same = day_performance(DAY, shifted, None, baseline=baseline, calibration=calibration)
    assert same.prediction_shift < 0.1


def test_segments_below_the_minimum_rows_are_left_out():
    labels, scores = scored(600, separation=2.0, seed=9)
    frame = pd.DataFrame({"label": labels, "score": scores, "contract": ["big"] * 500 + ["small"] * 100})
    assert list(segment_metrics(frame, ["contract", "absent"], "roc_auc", min_rows=200)) == ["contract"]
    assert list(segment_metrics(frame, ["contract"], "roc_auc", min_rows=200)["contract"]) == ["big"]


def test_an_undefined_figure_is_null_in_the_summary():
    from mlops_airflow.stats.performance_estimation import ScoreCalibration

    labels, scores = scored(500, separation=2.0, seed=11)
    calibration = ScoreCalibration(scores, labels)
    one_class = pd.DataFrame({"label": np.zeros(50, dtype=int), "score": np.linspace(0, 1, 50)})
    day = day_performance(DAY, one_class["score"].to_numpy(), one_class, baseline=None, calibration=calibration)
    assert day.realized["roc_auc"] != day.realized["roc_auc"]  # NaN: one class
    assert day.as_dict()["realized"]["roc_auc"] is None
    assert day.as_dict()["concept_drift"] is None
