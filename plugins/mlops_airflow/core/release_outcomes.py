"""A release judged on outcomes: the new version against the old on live requests, once their labels arrive.

Where it sits in the loop: an A/B test or a shadow replay is judged at release time on health
and agreement only (:mod:`mlops_airflow.core.release_analysis`): which version does *better*
needs the outcomes, which land days later. ``performance_monitor_<model>`` then joins the
logged answers (:mod:`mlops_airflow.core.logged_predictions`) with the labels and judges them
here, as promotion judges a challenger (:mod:`mlops_airflow.stats.gating`):

- *A/B*: each version answered its own clients. The two samples are different rows, so each is
  resampled on its own (a two-sample bootstrap) and each resample pair gives one difference.
- *Shadow*: the new version scored the very requests the old one answered, so the difference is
  paired: each resample scores both versions on the same rows (the promotion's paired bootstrap,
  on production traffic).

The verdict uses the promotion's own rule on the improvement (new over old; positive is better):
``Successful`` when its lower bound at the promotion's confidence passes (above ``-margin`` for
non-inferiority, above ``+margin`` for superiority, as the promotion gate); ``Failed`` when even
its upper bound is below that line;
``Inconclusive`` in between, with fewer than ``min_rows`` labelled answers on either side, or
where the metric is undefined (one class only). Pure numpy; no Airflow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from mlops_airflow.core.release_analysis import Verdict

if TYPE_CHECKING:
    import numpy as np

AB = "ab"
SHADOW = "shadow"


@dataclass(frozen=True)
class OutcomeRule:
    """How the improvement is judged: the promotion's comparison, margin, confidence and resamples."""

    metric: str
    comparison: str  # non_inferiority | superiority
    margin: float
    confidence: float
    resamples: int
    min_rows: int
    seed: int = 0

    @property
    def line(self) -> float:
        """The improvement the bounds are held against: the promotion gate's threshold (``stats.gating.judge``)."""
        from mlops_airflow.stats.gating import NON_INFERIORITY

        return (-self.margin if self.comparison == NON_INFERIORITY else self.margin) + 0.0  # no -0.0


@dataclass(frozen=True)
class ReleaseOutcome:
    """The new version against the old on labelled live requests."""

    strategy: str
    metric: str
    new_version: str
    old_version: str
    new_rows: int  # labelled answers of the new version
    old_rows: int
    new: float | None = None
    old: float | None = None
    improvement: float | None = None  # new over old; positive is better
    lower: float | None = None
    upper: float | None = None
    confidence: float | None = None
    verdict: Verdict = Verdict.INCONCLUSIVE
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": str(self.verdict), "reasons": list(self.reasons)}


def _proba(scores: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.column_stack([1.0 - scores, scores])


def _verdict(improvement: float, lower: float, upper: float, rule: OutcomeRule) -> tuple[Verdict, str]:
    side = f"{rule.comparison.replace('_', '-')}" + (f" (margin {rule.margin:g})" if rule.margin else "")
    figures = f"{rule.metric} improvement {improvement:+.4f}, {rule.confidence:.0%} bounds [{lower:+.4f}, {upper:+.4f}]"
    if lower > rule.line:
        return Verdict.SUCCESSFUL, f"{figures}: the new version passes {side} on live outcomes"
    if upper < rule.line:
        return Verdict.FAILED, f"{figures}: the new version falls short of {side} on live outcomes"
    return Verdict.INCONCLUSIVE, f"{figures}: the outcomes cannot tell the versions apart at this confidence"


def _too_few(strategy: str, rule: OutcomeRule, new_version: str, old_version: str, new_rows: int, old_rows: int) -> ReleaseOutcome | None:
    if min(new_rows, old_rows) >= rule.min_rows:
        return None
    return ReleaseOutcome(
        strategy,
        rule.metric,
        new_version,
        old_version,
        new_rows,
        old_rows,
        confidence=rule.confidence,
        reasons=(f"{new_rows} labelled answers of v{new_version} and {old_rows} of v{old_version}; a verdict needs {rule.min_rows} of each",),
    )


def judge_ab(
    rule: OutcomeRule,
    *,
    new_version: str,
    old_version: str,
    new_labels: np.ndarray,
    new_scores: np.ndarray,
    old_labels: np.ndarray,
    old_scores: np.ndarray,
) -> ReleaseOutcome:
    """Each version on the labelled answers it gave its own clients (binary labels, positive-class scores)."""
    import numpy as np

    from mlops_airflow.stats.classification import METRICS
    from mlops_airflow.stats.gating import resample_weights

    short = _too_few(AB, rule, new_version, old_version, len(new_labels), len(old_labels))
    if short:
        return short
    spec = METRICS[rule.metric]
    new = float(spec.compute(new_labels, _proba(new_scores), np.ones((1, len(new_labels))))[0])
    old = float(spec.compute(old_labels, _proba(old_scores), np.ones((1, len(old_labels))))[0])
    base = ReleaseOutcome(
        AB, rule.metric, new_version, old_version, len(new_labels), len(old_labels), new=_finite(new), old=_finite(old), confidence=rule.confidence
    )
    if not (math.isfinite(new) and math.isfinite(old)):
        return replace(base, reasons=(f"{rule.metric} is undefined on one version's labelled answers (one class only)",))
    new_boot = np.concatenate([spec.compute(new_labels, _proba(new_scores), w) for w in resample_weights(len(new_labels), rule.resamples, rule.seed)])
    old_boot = np.concatenate([spec.compute(old_labels, _proba(old_scores), w) for w in resample_weights(len(old_labels), rule.resamples, rule.seed + 1)])
    differences = np.asarray(spec.improvement(new_boot, old_boot), dtype=float)
    if not np.isfinite(differences).all():
        return replace(base, reasons=(f"{rule.metric} is undefined on some resamples: too few of one class",))
    improvement = float(spec.improvement(new, old))
    lower, upper = float(np.quantile(differences, 1 - rule.confidence)), float(np.quantile(differences, rule.confidence))
    verdict, reason = _verdict(improvement, lower, upper, rule)
    return replace(base, improvement=improvement, lower=lower, upper=upper, verdict=verdict, reasons=(reason,))


def judge_shadow(
    rule: OutcomeRule, *, new_version: str, old_version: str, labels: np.ndarray, new_scores: np.ndarray, old_scores: np.ndarray
) -> ReleaseOutcome:
    """Both versions on the same labelled requests: row ``i`` of ``new_scores`` and ``old_scores`` answer the same input."""
    import numpy as np

    from mlops_airflow.stats.classification import METRICS
    from mlops_airflow.stats.gating import EvaluationError, paired_bootstrap

    rows = len(labels)
    short = _too_few(SHADOW, rule, new_version, old_version, rows, rows)
    if short:
        return short
    spec = METRICS[rule.metric]
    ones = np.ones((1, rows))
    new, old = float(spec.compute(labels, _proba(new_scores), ones)[0]), float(spec.compute(labels, _proba(old_scores), ones)[0])
    base = ReleaseOutcome(SHADOW, rule.metric, new_version, old_version, rows, rows, new=_finite(new), old=_finite(old), confidence=rule.confidence)
    try:
        result = paired_bootstrap(
            rule.metric, labels, _proba(new_scores), _proba(old_scores), resamples=rule.resamples, confidence=rule.confidence, seed=rule.seed
        )
    except EvaluationError as err:
        return replace(base, reasons=(str(err),))
    verdict, reason = _verdict(result.observed, result.lower, result.upper, rule)
    return replace(base, improvement=result.observed, lower=result.lower, upper=result.upper, verdict=verdict, reasons=(reason,))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
