"""Paired bootstrap and gate verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_airflow.stats.gating import (
    NON_INFERIORITY,
    SUPERIORITY,
    BootstrapResult,
    EvaluationError,
    GatePolicy,
    SegmentComparison,
    judge,
    paired_bootstrap,
    require_finite,
    resample_weights,
)


def scored(seed, n=2000, signal=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    latent = rng.normal(size=n) + 1.2 * y
    return y, latent


def proba_from(score):
    p = 1 / (1 + np.exp(-score))
    return np.column_stack([1 - p, p])


def test_resample_weights_are_seeded_counts():
    blocks = list(resample_weights(50, 30, seed=4))
    again = np.concatenate(list(resample_weights(50, 30, seed=4)))
    weights = np.concatenate(blocks)
    assert weights.shape == (30, 50)
    assert (weights.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(weights, again)
    assert not np.array_equal(weights, np.concatenate(list(resample_weights(50, 30, seed=5))))


def test_resample_weights_come_in_blocks_for_large_inputs(monkeypatch):
    from mlops_airflow.stats import gating

    monkeypatch.setattr(gating, "_MAX_CELLS", 1000)
    blocks = list(resample_weights(300, 10, seed=1))
    assert [b.shape[0] for b in blocks] == [3, 3, 3, 1]


def test_identical_models_have_zero_improvement():
    y, latent = scored(1)
    result = paired_bootstrap("roc_auc", y, proba_from(latent), proba_from(latent), resamples=200, seed=1)
    assert (result.observed, result.lower, result.upper, result.mean) == (0, 0, 0, 0)


def test_better_model_has_a_positive_lower_bound():
    y, latent = scored(2)
    noise = np.random.default_rng(2).normal(size=len(y))
    result = paired_bootstrap("roc_auc", y, proba_from(latent), proba_from(latent + 2 * noise), resamples=300, seed=3)
    assert result.lower > 0.02
    assert result.lower < result.observed < result.upper


def test_lower_is_better_metrics_are_oriented():
    y, latent = scored(3)
    noise = np.random.default_rng(3).normal(size=len(y))
    result = paired_bootstrap("log_loss", y, proba_from(latent), proba_from(latent + 2 * noise), resamples=200, seed=3)
    assert result.observed > 0
    assert result.lower > 0


def test_pairing_sees_a_difference_that_separate_intervals_would_not():
    # A small, consistent improvement: the paired bound is above zero.
    y, latent = scored(4, n=3000)
    small = np.random.default_rng(4).normal(size=len(y))
    result = paired_bootstrap("roc_auc", y, proba_from(latent), proba_from(latent + 0.35 * small), resamples=400, seed=0)
    assert 0 < result.lower < 0.02


def test_bootstrap_is_reproducible():
    y, latent = scored(5)
    other = latent + np.random.default_rng(5).normal(size=len(y))
    first = paired_bootstrap("roc_auc", y, proba_from(latent), proba_from(other), resamples=100, seed=9)
    assert first == paired_bootstrap("roc_auc", y, proba_from(latent), proba_from(other), resamples=100, seed=9)


@pytest.mark.parametrize(
    "y",
    [pytest.param(np.zeros(100, dtype=int), id="one-class"), pytest.param(np.r_[np.zeros(99, dtype=int), 1], id="one-positive")],
)
def test_undefined_metric_fails_closed(y):
    proba = proba_from(np.linspace(-1, 1, 100))
    with pytest.raises(EvaluationError, match="roc_auc"):
        paired_bootstrap("roc_auc", y, proba, proba[::-1], resamples=200, seed=0)


def bootstrap(lower):
    return BootstrapResult("roc_auc", 100, 0.95, 0, observed=lower + 0.01, mean=lower + 0.01, lower=lower, upper=lower + 0.02)


POLICY = GatePolicy(primary_metric="roc_auc", minimums={"roc_auc": 0.7}, maximums={"log_loss": 0.6}, comparison=NON_INFERIORITY, margin=0.01)


@pytest.mark.parametrize(
    ("policy", "lower", "passed"),
    [
        pytest.param(POLICY, -0.005, True, id="non-inferior-within-margin"),
        pytest.param(POLICY, -0.02, False, id="inferior-beyond-margin"),
        pytest.param(GatePolicy("roc_auc", {}, {}, SUPERIORITY, 0.0), 0.0, False, id="superiority-needs-a-positive-bound"),
        pytest.param(GatePolicy("roc_auc", {}, {}, SUPERIORITY, 0.0), 0.001, True, id="superior"),
        pytest.param(GatePolicy("roc_auc", {}, {}, SUPERIORITY, 0.01), 0.005, False, id="superior-but-below-margin"),
    ],
)
def test_comparison_uses_the_lower_bound(policy, lower, passed):
    gates = judge(policy, {"roc_auc": 0.8, "log_loss": 0.4}, champion={"roc_auc": 0.8}, bootstrap=bootstrap(lower))
    (comparison,) = [g for g in gates if "roc_auc" in g.name and not g.name.startswith(("minimum", "maximum"))]
    assert comparison.passed is passed
    assert "lower bound" in comparison.detail


def test_without_a_champion_thresholds_alone_decide():
    gates = judge(POLICY, {"roc_auc": 0.65, "log_loss": 0.5})
    assert [(g.name, g.passed) for g in gates] == [("minimum roc_auc", False), ("maximum log_loss", True)]
    assert gates[0].detail == "0.6500 < 0.7000"


def test_segment_regression_gate():
    policy = GatePolicy("roc_auc", {}, {}, NON_INFERIORITY, 0.01, max_segment_regression=0.02)
    segments = [SegmentComparison("contract", "one-year", 500, 0.80, 0.79), SegmentComparison("contract", "two-year", 300, 0.70, 0.75)]
    gates = judge(policy, {"roc_auc": 0.8}, champion={"roc_auc": 0.79}, bootstrap=bootstrap(0.0), segments=segments)
    verdicts = {g.name: g.passed for g in gates}
    assert verdicts == {"non-inferiority roc_auc": True, "segment contract=one-year": True, "segment contract=two-year": False}
    assert "regression +0.0500 > 0.0200" in gates[-1].detail


@pytest.mark.parametrize(
    ("metrics", "message"),
    [({"roc_auc": float("nan")}, "non-finite"), ({}, "has no roc_auc"), ({"roc_auc": float("inf")}, "non-finite")],
)
def test_require_finite(metrics, message):
    with pytest.raises(EvaluationError, match=message):
        require_finite(metrics, ["roc_auc"], "challenger v2")
