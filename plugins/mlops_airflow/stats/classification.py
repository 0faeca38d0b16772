"""Classification metrics that take row weights, so one call scores many bootstrap resamples.

Pure numpy, no Airflow. Every metric has the signature ``metric(y, proba, weights)``:

- ``y``: ``(n,)`` class indices ``0..k-1`` (the column of ``proba`` that is the true class);
- ``proba``: ``(n, k)`` predicted probabilities;
- ``weights``: ``(b, n)``, one row per resample (bootstrap counts; a row of ones is the
  plain metric).

It returns ``(b,)`` values. A metric that is not defined for a resample (ROC AUC with one
class only) is NaN there; callers decide what NaN means. With unit weights each metric
equals scikit-learn's (``roc_auc_score``, ``accuracy_score``, ``f1_score`` binary on the
last class or macro, ``log_loss``, ``brier_score_loss``); the tests hold them to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    import numpy as np

    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ values) / total


def accuracy(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _weighted_mean((proba.argmax(axis=1) == y).astype("float64"), weights)


def log_loss(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    import numpy as np

    eps = np.finfo(proba.dtype if proba.dtype.kind == "f" else np.float64).eps
    # scikit-learn rescales rows that do not sum to one before taking the log.
    normalised = proba / proba.sum(axis=1, keepdims=True)
    true_class = np.clip(normalised[np.arange(len(y)), y], eps, 1 - eps)
    return _weighted_mean(-np.log(true_class), weights)


def brier(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary: squared error of the last class's probability; multiclass: summed over classes."""
    import numpy as np

    if proba.shape[1] == 2:
        return _weighted_mean((proba[:, 1] - (y == 1)) ** 2, weights)
    onehot = np.eye(proba.shape[1])[y]
    return _weighted_mean(((proba - onehot) ** 2).sum(axis=1), weights)


def f1(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary: F1 of the last class; multiclass: the unweighted mean of per-class F1 (macro)."""
    import numpy as np

    predicted = proba.argmax(axis=1)
    k = proba.shape[1]
    classes = [k - 1] if k == 2 else range(k)
    scores = []
    for c in classes:
        tp = weights @ ((predicted == c) & (y == c)).astype("float64")
        fp = weights @ ((predicted == c) & (y != c)).astype("float64")
        fn = weights @ ((predicted != c) & (y == c)).astype("float64")
        denominator = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            # scikit-learn's zero_division default: 0 when the class is never seen nor predicted.
            scores.append(np.where(denominator > 0, 2 * tp / denominator, 0.0))
    return np.mean(scores, axis=0)


def _binary_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC; tied scores count one half. Sorts once for every resample."""
    import numpy as np

    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ordered = weights[:, order]
    is_positive = positive[order]
    pos = np.add.reduceat(ordered * is_positive, starts, axis=1)
    neg = np.add.reduceat(ordered * ~is_positive, starts, axis=1)
    negatives_below = np.cumsum(neg, axis=1) - neg
    concordant = (pos * (negatives_below + 0.5 * neg)).sum(axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, concordant / np.where(pairs > 0, pairs, 1.0), np.nan)


def roc_auc(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary: AUC of the last class's probability; multiclass: macro one-vs-rest."""
    import numpy as np

    if proba.shape[1] == 2:
        return _binary_auc(proba[:, 1], y == 1, weights)
    return np.mean([_binary_auc(proba[:, c], y == c, weights) for c in range(proba.shape[1])], axis=0)


@dataclass(frozen=True)
class Metric:
    """A metric and which way is better."""

    name: str
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    higher_is_better: bool

    def improvement(self, challenger: np.ndarray | float, champion: np.ndarray | float):
        """Challenger minus champion, signed so that a positive value is always better."""
        return (challenger - champion) if self.higher_is_better else (champion - challenger)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", roc_auc, True),
        Metric("accuracy", accuracy, True),
        Metric("f1", f1, True),
        Metric("log_loss", log_loss, False),
        Metric("brier", brier, False),
    )
}


def score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """The plain (unit-weight) value of one metric."""
    import numpy as np

    return float(METRICS[metric].compute(y, proba, np.ones((1, len(y))))[0])
