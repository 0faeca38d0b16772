"""Two-sample Kolmogorov-Smirnov tests over many features at once, and Benjamini-Hochberg.

Pure numpy (scipy only for the p-value distributions); no Airflow.

The statistic. For sorted samples ``a`` (n1 values) and ``b`` (n2 values) the empirical CDF
difference ``F1 - F2`` steps up at the points of ``a`` and down at the points of ``b``, so
its maximum is reached at a point of ``a`` and its minimum at a point of ``b``:

    max(F1 - F2) = max_i (i + 1) / n1 - #{b <= a_i} / n2
    min(F1 - F2) = min_j #{a <= b_j} / n1 - (j + 1) / n2

Within a run of tied values the count from the other sample is constant while the own
count grows, so the extremes fall on the last value of each run: ties need no special
case. Each count is one ``searchsorted`` of a sorted column into the other, the same
floating-point expression ``scipy.stats.ks_2samp`` evaluates at the pooled points, so D
equals scipy's bit for bit (scipy evaluates 2(n1 + n2) searches per column, this n1 + n2,
and it sorts nothing twice: each column is sorted once, all columns in one call).

The p-value is scipy's for the same method: ``"exact"`` (small samples, scipy's own exact
path) or ``"asymp"`` (``kstwo.sf`` at the rounded effective sample size); ``"auto"`` picks
as scipy does (exact when both samples have at most 10,000 values).

One exception, for speed, and only with ``fast_tail=True`` (the default): in the tail that
scipy computes as ``2 * smirnov(n, d)`` (``n d^2 >= 2.2``, effective n above 10,000), which
costs up to half a second per feature at n = 500,000, the p-value is the closed form
``2 exp(-(6 n d + 1)^2 / (18 n))`` of the one-sided Smirnov tail. Its absolute error is at
most ``TAIL_ERROR_PER_N / n`` (measured on a dense grid of n and d, and tested); the result
carries that bound per feature (``pvalue_error``) so that a decision near a threshold can
ask for scipy's value (``exact_pvalue``), as ``stats/drift_assessment.py`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["auto", "exact", "asymp"]
MAX_AUTO_EXACT_N = 10_000  # scipy's ``ks_2samp(method="auto")`` threshold
FAST_TAIL_MIN_N = 10_000  # the closed-form tail is used above this effective sample size
TAIL_ERROR_PER_N = 0.03  # |closed form - scipy| <= TAIL_ERROR_PER_N / n in that tail
_BLOCK_BYTES = 256 * 1024 * 1024  # columns are sorted in blocks of about this much memory


class DriftInputError(ValueError):
    """The samples cannot be tested: wrong shape, or a column with no finite value."""


@dataclass(frozen=True)
class KSColumnsResult:
    """One value per feature (column)."""

    statistic: np.ndarray  # D
    pvalue: np.ndarray
    pvalue_error: np.ndarray  # a bound on |pvalue - scipy's|: 0 where the value is scipy's own
    method: tuple[str, ...]  # "exact" or "asymp", per column
    n_reference: np.ndarray  # finite values used
    n_current: np.ndarray
    dropped_reference: np.ndarray  # NaN and +-inf values left out
    dropped_current: np.ndarray


def _as_2d(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DriftInputError(f"{name} must be a 2-D array (rows x features); got {array.ndim} dimensions")
    return array


def _sorted_finite(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features x rows, each row sorted with NaN and +-inf moved to its end; and the finite count per feature."""
    columns = np.ascontiguousarray(block.T)  # one copy: each feature's values contiguous
    nonfinite = ~np.isfinite(columns)
    columns[nonfinite] = np.nan  # NaN sorts last
    columns.sort(axis=1)  # -0.0 and 0.0 stay one tie for searchsorted, as for scipy
    return columns, columns.shape[1] - np.count_nonzero(nonfinite, axis=1)


def _statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided D of two sorted, finite, non-empty 1-D samples."""
    n1, n2 = a.shape[0], b.shape[0]
    b_at_a = np.searchsorted(b, a, side="right")
    a_at_b = np.searchsorted(a, b, side="right")
    max_s = np.max(np.arange(1, n1 + 1) / n1 - b_at_a / n2)
    min_s = np.min(a_at_b / n1 - np.arange(1, n2 + 1) / n2)
    # max_s >= 0 always (the last point of the sample that ends later scores 0 or more)
    return float(max(np.clip(-min_s, 0, 1), max_s))


def _exact_pvalue(n1: int, n2: int, d: float) -> tuple[bool, float, float]:
    """scipy's exact two-sided path: (succeeded, D rounded to the lattice, p)."""
    from scipy.stats._stats_py import _attempt_exact_2kssamp  # the same code ks_2samp runs

    return _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")


def _effective_n(n1: int, n2: int) -> float:
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.round(m * n / (m + n)))


def _asymp_pvalue(n1: int, n2: int, d: float, fast_tail: bool) -> tuple[float, float]:
    """(p, error bound) of scipy's asymptotic path; the closed-form tail where it is slow."""
    n = _effective_n(n1, n2)
    if fast_tail and n > FAST_TAIL_MIN_N and n * d * d >= 2.2:
        return float(2.0 * np.exp(-((6.0 * n * d + 1.0) ** 2) / (18.0 * n))), TAIL_ERROR_PER_N / n
    from scipy.stats import kstwo

    return float(kstwo.sf(d, n)), 0.0


def _pvalue(n1: int, n2: int, d: float, method: Method, fast_tail: bool = False) -> tuple[float, float, str, float]:
    """(D, p, method used, error bound of p), following ``scipy.stats.ks_2samp`` step for step."""
    mode = method
    if mode == "auto":
        mode = "exact" if max(n1, n2) <= MAX_AUTO_EXACT_N else "asymp"
    elif mode == "exact":
        g = math.gcd(n1, n2)
        if n1 // g >= np.iinfo(np.int32).max / (n2 // g):
            mode = "asymp"
    error = 0.0
    if mode == "exact":
        succeeded, d, p = _exact_pvalue(n1, n2, d)
        if not succeeded:
            mode = "asymp"
    if mode == "asymp":
        p, error = _asymp_pvalue(n1, n2, d, fast_tail)
    return float(d), float(np.clip(p, 0, 1)), mode, error


def exact_pvalue(n_reference: int, n_current: int, statistic: float, method: Method = "auto") -> float:
    """scipy's p-value for one feature of a result, whatever ``fast_tail`` gave."""
    return _pvalue(int(n_reference), int(n_current), float(statistic), method, fast_tail=False)[1]


def ks_2samp_columns(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    method: Method = "auto",
    fast_tail: bool = True,
    feature_names: Sequence[str] | None = None,
) -> KSColumnsResult:
    """
    Two-sided two-sample KS test of every column of ``current`` against the same column of ``reference``.

    :param reference: rows x features; NaN and +-inf are dropped and counted per column.
    :param current: rows x the same features.
    :param method: ``"auto"``, ``"exact"`` or ``"asymp"``, as in ``scipy.stats.ks_2samp``.
    :param fast_tail: the closed-form p-value in scipy's slow tail (see the module docstring);
        ``False`` gives scipy's value everywhere.
    :param fast_tail: the closed-form p-value in scipy's slow tail (see the module docstring);
        ``False`` gives scipy's value everywhere.
    :param feature_names: names for error messages (default: the column index).
    :raises DriftInputError: on mismatched shapes or a column without any finite value.
    """
    if method not in ("auto", "exact", "asymp"):
        raise DriftInputError(f"method must be auto, exact or asymp; got {method!r}")
    reference, current = _as_2d("reference", reference), _as_2d("current", current)
    if reference.shape[1] != current.shape[1]:
        raise DriftInputError(f"reference has {reference.shape[1]} features but current has {current.shape[1]}")
    features = reference.shape[1]
    statistic, pvalue, error = np.empty(features), np.empty(features), np.zeros(features)
    n_reference, n_current = np.empty(features, dtype=np.int64), np.empty(features, dtype=np.int64)
    methods: list[str] = []
    row_bytes = 8 * (reference.shape[0] + current.shape[0])
    step = max(1, _BLOCK_BYTES // max(row_bytes, 1))
    for first in range(0, features, step):
        columns = slice(first, min(first + step, features))
        ref_sorted, ref_counts = _sorted_finite(reference[:, columns])
        cur_sorted, cur_counts = _sorted_finite(current[:, columns])
        for offset, (a, b, n1, n2) in enumerate(zip(ref_sorted, cur_sorted, ref_counts, cur_counts, strict=True)):
            column = first + offset
            if n1 == 0 or n2 == 0:
                side = "reference" if n1 == 0 else "current"
                name = repr(feature_names[column]) if feature_names is not None else str(column)
                raise DriftInputError(f"feature {name} has no finite value in the {side} sample: it cannot be tested")
            d = _statistic(a[:n1], b[:n2])
            statistic[column], pvalue[column], used, error[column] = _pvalue(int(n1), int(n2), d, method, fast_tail)
            methods.append(used)
            n_reference[column], n_current[column] = n1, n2
    return KSColumnsResult(
        statistic=statistic,
        pvalue=pvalue,
        pvalue_error=error,
        method=tuple(methods),
        n_reference=n_reference,
        n_current=n_current,
        dropped_reference=reference.shape[0] - n_reference,
        dropped_current=current.shape[0] - n_current,
    )


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """
    Benjamini-Hochberg adjusted p-values (q-values); NaN (an untested feature) stays NaN
    and is not counted in the family.

    A feature is a discovery at false discovery rate ``alpha`` when its q-value is at most
    ``alpha``. Under the global null (no feature drifts) this also bounds the chance of any
    false alarm by ``alpha``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    m = int(tested.sum())
    if m == 0:
        return adjusted
    values = p[tested]
    order = np.argsort(values)
    scaled = values[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.clip(q, 0, 1)
    adjusted[tested] = result
    return adjusted
