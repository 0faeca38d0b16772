"""A classifier's performance before its labels arrive, and concept drift once they do.

Confidence-based performance estimation (CBPE). On the reference window, where labels are
known, the model's scores are calibrated: an isotonic regression of the label on the score
gives, for any score, the probability that the row is positive. On a chunk of production
traffic without labels, each row's calibrated probability ``p`` is the chance its prediction
is right (``p`` if predicted positive, ``1 - p`` if not), so the expected accuracy is their
mean; and walking the rows by descending score, the expected true and false positives are
the running sums of ``p`` and ``1 - p``, whose curve's area is the expected ROC AUC.

This holds while the probability of the label given the score stays what the reference
window showed: under covariate shift (the features move, the relationship between features
and label does not) the estimate follows the realized figures. When that relationship
changes (concept drift) the estimate and the realized figures part once labels arrive. Two
gaps are judged, each against its own sampling error:

- the ROC AUC: realized minus estimated, beyond ``CONCEPT_DRIFT_Z`` standard errors of the
  realized AUC (Hanley and McNeil) and beyond ``CONCEPT_DRIFT_TOLERANCE``;
- the positives: the count the labels show minus the count the calibration expects (the sum
  of ``p``), beyond ``CONCEPT_DRIFT_Z`` standard deviations of that difference: the chunk's
  Poisson-binomial variance, plus the calibration's own error, block by block of the
  isotonic fit (a chunk packed into few blocks leans on few reference rows).

Either one is concept drift: a ranking that got worse, or scores that no longer mean the
share of positives they meant.

Pure numpy and scikit-learn; no Airflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

CONCEPT_DRIFT_Z = 3.0  # gap beyond this many standard errors of the realized AUC...
CONCEPT_DRIFT_TOLERANCE = 0.02  # ...and beyond this absolute tolerance: concept drift


class EstimationInputError(ValueError):
    """Scores or labels that cannot be calibrated or judged."""


@dataclass(frozen=True)
class Performance:
    """One chunk's figures: estimated (no labels needed) or realized (labels joined)."""

    roc_auc: float
    accuracy: float
    rows: int


@dataclass(frozen=True)
class ConceptDrift:
    estimated_auc: float
    realized_auc: float
    gap: float  # realized - estimated
    bound: float  # max(CONCEPT_DRIFT_TOLERANCE, CONCEPT_DRIFT_Z x standard error of the realized AUC)
    expected_positives: float  # the sum of the calibrated probabilities
    positives: int  # what the labels show
    positives_z: float  # (positives - expected) in standard deviations

    @property
    def ranking_changed(self) -> bool:
        """The AUC the labels show is off the estimate by more than its sampling error explains."""
        return abs(self.gap) > self.bound

    @property
    def calibration_changed(self) -> bool:
        """The labels hold more or fewer positives than the scores promised, beyond their sampling error."""
        return abs(self.positives_z) > CONCEPT_DRIFT_Z

    @property
    def drifted(self) -> bool:
        """Concept drift: either change."""
        return self.ranking_changed or self.calibration_changed


def _scores(values: Any, name: str) -> np.ndarray:
    try:
        scores = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise EstimationInputError(f"{name} must be numbers: {err}") from err
    if scores.size == 0:
        raise EstimationInputError(f"{name} is empty")
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise EstimationInputError(f"{name}: {bad} of {scores.size} values are not finite numbers")
    return scores


def _labels(values: Any, rows: int) -> np.ndarray:
    labels = np.asarray(values).ravel()
    if labels.size != rows:
        raise EstimationInputError(f"{labels.size} labels for {rows} scores")
    bad = int((~np.isin(labels, (0, 1))).sum())
    if bad:
        raise EstimationInputError(f"labels must be 0 or 1; {bad} of {labels.size} are not (a missing label included)")
    return labels.astype(np.int64)


class ScoreCalibration:
    """The probability that a row is positive, given its score, as the reference window showed it."""

    def __init__(self, reference_scores: Any, reference_labels: Any) -> None:
        from sklearn.isotonic import IsotonicRegression

        scores = _scores(reference_scores, "reference scores")
        labels = _labels(reference_labels, scores.size)
        if labels.min() == labels.max():
            raise EstimationInputError("the reference labels are all one class: nothing to calibrate against")
        self._isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
        # The fit's blocks (runs of one calibrated value) and the reference rows behind each.
        self._block_values, self._block_rows = np.unique(self._isotonic.predict(scores), return_counts=True)

    def probabilities(self, scores: Any) -> np.ndarray:
        """Each score's calibrated probability of a positive label."""
        return self._isotonic.predict(_scores(scores, "scores"))

    def expected_positives_variance(self, p: np.ndarray) -> float:
        """The variance of the count of positives a chunk with calibrated probabilities ``p`` shows:
        its own Poisson-binomial spread, plus the calibration's, each block's value being the mean of
        its reference rows (a chunk row between two blocks counts with the lower one's)."""
        block = np.clip(np.searchsorted(self._block_values, p, side="right") - 1, 0, len(self._block_values) - 1)
        rows_per_block = np.bincount(block, minlength=len(self._block_values))
        values = self._block_values
        calibration = float(np.sum(rows_per_block.astype(np.float64) ** 2 * values * (1.0 - values) / self._block_rows))
        return float((p * (1.0 - p)).sum()) + calibration


def _threshold(threshold: float) -> float:
    if not math.isfinite(threshold):
        raise EstimationInputError(f"threshold must be a finite number; got {threshold!r}")
    return float(threshold)


def estimate_performance(calibration: ScoreCalibration, scores: Any, threshold: float = 0.5) -> Performance:
    """
    Expected ROC AUC and accuracy of a chunk of scores with no labels.

    :param threshold: a score at or above it predicts the positive class (for the accuracy).
    :raises EstimationInputError: scores that are not finite numbers, or none.
    """
    threshold = _threshold(threshold)
    scores = _scores(scores, "scores")
    p = calibration.probabilities(scores)
    predicted = scores >= threshold
    accuracy = float(np.mean(np.where(predicted, p, 1.0 - p)))
    positives, negatives = float(p.sum()), float((1.0 - p).sum())
    if positives <= 0.0 or negatives <= 0.0:
        return Performance(roc_auc=math.nan, accuracy=accuracy, rows=scores.size)
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_p = scores[order], p[order]
    # One ROC point per distinct score: tied rows move the curve together, as for the realized curve.
    last_of_tie = np.append(ranked_scores[1:] != ranked_scores[:-1], True)
    tpr = np.concatenate([[0.0], np.cumsum(ranked_p)[last_of_tie] / positives])
    fpr = np.concatenate([[0.0], np.cumsum(1.0 - ranked_p)[last_of_tie] / negatives])
    roc_auc = float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))
    return Performance(roc_auc=roc_auc, accuracy=accuracy, rows=scores.size)


def realized_performance(scores: Any, labels: Any, threshold: float = 0.5) -> Performance:
    """
    ROC AUC and accuracy of a chunk whose labels have arrived (AUC NaN when they are all one class).

    :raises EstimationInputError: scores that are not finite numbers, or labels other than 0 and 1.
    """
    from sklearn.metrics import roc_auc_score

    threshold = _threshold(threshold)
    scores = _scores(scores, "scores")
    labels = _labels(labels, scores.size)
    accuracy = float(np.mean((scores >= threshold) == (labels == 1)))
    roc_auc = float(roc_auc_score(labels, scores)) if labels.min() != labels.max() else math.nan
    return Performance(roc_auc=roc_auc, accuracy=accuracy, rows=scores.size)


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of an ROC AUC measured on this many positives and negatives."""
    if positives < 1 or negatives < 1:
        raise EstimationInputError(f"an AUC needs positives and negatives; got {positives} and {negatives}")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def concept_drift(calibration: ScoreCalibration, scores: Any, labels: Any) -> ConceptDrift:
    """
    Compare a chunk's estimate (what its scores promised) with what its labels show.

    :raises EstimationInputError: bad scores or labels, or a chunk whose labels are all one class.
    """
    estimated = estimate_performance(calibration, scores)
    realized = realized_performance(scores, labels)
    labels = _labels(labels, realized.rows)
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    if math.isnan(realized.roc_auc) or math.isnan(estimated.roc_auc):
        raise EstimationInputError("a chunk whose labels or estimate are all one class cannot be judged for concept drift")
    bound = max(CONCEPT_DRIFT_TOLERANCE, CONCEPT_DRIFT_Z * auc_standard_error(realized.roc_auc, positives, negatives))
    p = calibration.probabilities(scores)
    expected = float(p.sum())
    variance = calibration.expected_positives_variance(p)
    return ConceptDrift(
        estimated_auc=estimated.roc_auc,
        realized_auc=realized.roc_auc,
        gap=realized.roc_auc - estimated.roc_auc,
        bound=bound,
        expected_positives=expected,
        positives=positives,
        positives_z=(positives - expected) / math.sqrt(variance) if variance > 0 else 0.0,
    )
