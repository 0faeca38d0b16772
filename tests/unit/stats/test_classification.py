"""Weighted metrics equal scikit-learn's, and weights behave as repeated rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from mlops_airflow.stats.classification import METRICS, score


def binary_case(seed, n=400, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    if ties:
        p1 = np.round(p1, 1)
    return y, np.column_stack([1 - p1, p1])


def multiclass_case(seed, n=400, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def sklearn_value(name, y, proba):
    k = proba.shape[1]
    predicted = proba.argmax(axis=1)
    if name == "roc_auc":
        return sk.roc_auc_score(y, proba[:, 1]) if k == 2 else sk.roc_auc_score(y, proba, multi_class="ovr", labels=list(range(k)))
    if name == "accuracy":
        return sk.accuracy_score(y, predicted)
    if name == "f1":
        return sk.f1_score(y, predicted, pos_label=1) if k == 2 else sk.f1_score(y, predicted, average="macro")
    if name == "log_loss":
        return sk.log_loss(y, proba, labels=list(range(k)))
    if name == "brier":
        return sk.brier_score_loss(y, proba[:, 1]) if k == 2 else np.mean(((proba - np.eye(k)[y]) ** 2).sum(axis=1))
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(lambda s: binary_case(s), id="binary"),
        pytest.param(lambda s: binary_case(s, ties=True), id="binary-ties"),
        pytest.param(lambda s: multiclass_case(s), id="multiclass"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_weights_match_sklearn(name, case, seed):
    y, proba = case(seed)
    assert score(name, y, proba) == pytest.approx(sklearn_value(name, y, proba), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_weights_are_repeated_rows(name):
    y, proba = binary_case(5, n=200)
    counts = np.random.default_rng(3).integers(0, 4, len(y))
    repeated = np.repeat(np.arange(len(y)), counts)
    weighted = METRICS[name].compute(y, proba, counts[None, :].astype(float))[0]
    assert weighted == pytest.approx(score(name, y[repeated], proba[repeated]), rel=1e-9)


def test_many_resamples_in_one_call():
    y, proba = binary_case(9, n=100)
    weights = np.random.default_rng(0).integers(0, 3, (7, 100)).astype(float)
    batch = METRICS["roc_auc"].compute(y, proba, weights)
    one_by_one = [METRICS["roc_auc"].compute(y, proba, w[None, :])[0] for w in weights]
    np.testing.assert_allclose(batch, one_by_one)


def test_auc_with_one_class_is_nan():
    y, proba = binary_case(1, n=50)
    assert np.isnan(score("roc_auc", np.zeros_like(y), proba))


def test_improvement_is_positive_when_better():
    assert METRICS["roc_auc"].improvement(0.8, 0.7) == pytest.approx(0.1)
    assert METRICS["log_loss"].improvement(0.3, 0.4) == pytest.approx(0.1)
