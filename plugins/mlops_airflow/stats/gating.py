"""Promotion gates: a paired bootstrap of the primary metric and the spec's thresholds.

Pure numpy, no Airflow. The evaluation scores challenger and champion on the same rows;
this module turns those scores into gate results. An evaluation that cannot be judged
(a NaN or missing metric) raises :class:`EvaluationError`: promotion fails closed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from mlops_airflow.stats.classification import METRICS

if TYPE_CHECKING:
    import numpy as np

NON_INFERIORITY = "non_inferiority"
SUPERIORITY = "superiority"
COMPARISONS = (NON_INFERIORITY, SUPERIORITY)

# Resample rows x evaluation rows held in memory at once (8 bytes each).
_MAX_CELLS = 2_000_000


class EvaluationError(ValueError):
    """The evidence cannot be computed (NaN, missing metric, mismatched inputs): fail closed."""


@dataclass(frozen=True)
class BootstrapResult:
    """Distribution of the paired improvement (challenger vs champion; positive is better)."""

    metric: str
    resamples: int
    confidence: float
    seed: int
    observed: float
    mean: float
    lower: float
    upper: float

    def as_dict(self) -> dict:
        return asdict(self)


def resample_weights(n: int, resamples: int, seed: int):
    """Bootstrap counts, ``(resamples, n)`` in blocks that fit in memory; the same seed gives the same blocks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, _MAX_CELLS // max(n, 1)))
    done = 0
    while done < resamples:
        size = min(block, resamples - done)
        rows = rng.integers(0, n, size=(size, n))
        flat = (rows + (np.arange(size) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n).reshape(size, n).astype("float64")
        done += size


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """
    Resample rows with replacement, score both models on the same resample, and take the difference.

    ``lower`` is the one-sided lower confidence bound of the improvement at ``confidence``
    (its ``1 - confidence`` quantile), ``upper`` the matching upper bound. Pairing removes the
    variation the two models share, so a small real difference is still visible.

    :raises EvaluationError: when the metric is undefined on the data or on some resample.
    """
    import numpy as np

    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    spec = METRICS[metric]
    ones = np.ones((1, len(y)))
    observed = spec.improvement(spec.compute(y, challenger, ones), spec.compute(y, champion, ones))[0]
    if not math.isfinite(observed):
        raise EvaluationError(f"{metric} is not defined on the evaluation rows")
    differences = np.concatenate(
        [spec.improvement(spec.compute(y, challenger, w), spec.compute(y, champion, w)) for w in resample_weights(len(y), resamples, seed)]
    )
    undefined = int((~np.isfinite(differences)).sum())
    if undefined:
        raise EvaluationError(f"{metric} is undefined on {undefined} of {resamples} bootstrap resamples; the evaluation window is too small")
    return BootstrapResult(
        metric=metric,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        observed=float(observed),
        mean=float(differences.mean()),
        lower=float(np.quantile(differences, 1 - confidence)),
        upper=float(np.quantile(differences, confidence)),
    )


@dataclass(frozen=True)
class GatePolicy:
    """The spec's promotion gates."""

    primary_metric: str
    minimums: Mapping[str, float]
    maximums: Mapping[str, float]
    comparison: str = NON_INFERIORITY
    margin: float = 0.0
    max_segment_regression: float | None = None


@dataclass(frozen=True)
class SegmentComparison:
    """The primary metric of both models on the rows of one segment value."""

    column: str
    value: str
    rows: int
    challenger: float
    champion: float


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def require_finite(metrics: Mapping[str, float], needed: Sequence[str], who: str) -> None:
    """Every metric a gate reads must exist and be finite, else the evaluation fails closed."""
    missing = [name for name in needed if name not in metrics]
    if missing:
        raise EvaluationError(f"{who} has no {', '.join(missing)}")
    not_finite = {name: metrics[name] for name in needed if not math.isfinite(metrics[name])}
    if not_finite:
        raise EvaluationError(f"{who} has non-finite metrics {not_finite}")


def judge(
    policy: GatePolicy,
    challenger: Mapping[str, float],
    *,
    champion: Mapping[str, float] | None = None,
    bootstrap: BootstrapResult | None = None,
    segments: Sequence[SegmentComparison] = (),
) -> list[GateResult]:
    """
    Every gate's verdict. Without a champion only the absolute thresholds apply.

    The comparison is judged on the bootstrap's lower bound, never on two point estimates:
    non-inferiority passes when ``lower > -margin``, superiority when ``lower > margin``.
    A segment fails when the challenger's primary metric there is worse than the
    champion's by more than ``max_segment_regression``.
    """
    results = []
    for name, floor in sorted(policy.minimums.items()):
        value = challenger[name]
        results.append(GateResult(f"minimum {name}", value >= floor, f"{value:.4f} {'>=' if value >= floor else '<'} {floor:.4f}"))
    for name, ceiling in sorted(policy.maximums.items()):
        value = challenger[name]
        results.append(GateResult(f"maximum {name}", value <= ceiling, f"{value:.4f} {'<=' if value <= ceiling else '>'} {ceiling:.4f}"))
    if champion is None:
        return results
    if bootstrap is None:
        raise EvaluationError("a champion exists but no bootstrap was computed")

    primary = METRICS[policy.primary_metric]
    threshold = (-policy.margin if policy.comparison == NON_INFERIORITY else policy.margin) + 0.0  # no -0.0
    passed = bootstrap.lower > threshold
    results.append(
        GateResult(
            f"{policy.comparison.replace('_', '-')} {primary.name}",
            passed,
            f"improvement {bootstrap.observed:+.4f}, {bootstrap.confidence:.0%} lower bound {bootstrap.lower:+.4f} {'>' if passed else '<='} {threshold:+.4f}",
        )
    )
    if policy.max_segment_regression is not None:
        for segment in segments:
            regression = -primary.improvement(segment.challenger, segment.champion)
            ok = regression <= policy.max_segment_regression
            results.append(
                GateResult(
                    f"segment {segment.column}={segment.value}",
                    ok,
                    f"{primary.name} {segment.challenger:.4f} vs {segment.champion:.4f} on {segment.rows} rows: regression {regression:+.4f} "
                    f"{'<=' if ok else '>'} {policy.max_segment_regression:.4f}",
                )
            )
    return results
