"""Two-sample Kolmogorov-Smirnov tests over many features at once, and Benjamini-Hochberg.

Pure numpy (scipy only for the p-value distributions); no Airflow.

The statistic. ``scipy.stats.ks_2samp`` evaluates, at every pooled value ``v``,

    F1(v) - F2(v) = #{a <= v} / n1 - #{b <= v} / n2

with two ``searchsorted`` calls of n1 + n2 values each, and takes D from its maximum and
minimum. Here each column is sorted once, and the two sorted samples are merged: a stable
argsort of their concatenation is one linear merge of two runs, not a comparison sort.
Along the merged order the count of ``a`` values seen so far is a cumulative sum, and at
the last position of each run of equal values the two counts are exactly #{a <= v} and
#{b <= v}. Only those positions are evaluated (inside a run that holds both samples the
partial counts describe no value), with the same integers in the same floating-point
expression as scipy's, so D equals scipy's bit for bit. numpy releases the GIL while it
sorts and merges, so columns are handled in threads, one per CPU: scipy's loop uses one core.

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
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["auto", "exact", "asymp"]
MAX_AUTO_EXACT_N = 10_000  # scipy's ``ks_2samp(method="auto")`` threshold
FAST_TAIL_MIN_N = 10_000  # the closed-form tail is used above this effective sample size
TAIL_ERROR_PER_N = 0.03  # |closed form - scipy| <= TAIL_ERROR_PER_N / n in that tail
WORKSPACE_BYTES_PER_VALUE = 82  # a thread's arrays per value of both samples (the argsort's included)
WORKSPACE_BUDGET_BYTES = 2 << 30  # fewer threads than CPUs when their workspaces would need more


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


def default_workers() -> int:
    """The CPUs this process may use: its affinity (a container's cpuset), and its cgroup's CPU quota
    (a Kubernetes CPU limit on a bigger node), whichever is fewer."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, quota) if quota else cpus)


def _cgroup_cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """CPUs allowed by a cgroup v2 quota (``"<quota> <period>"``, rounded up); None without one."""
    try:
        with open(path) as file:
            quota, period = file.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


class _Workspace:
    """The arrays one thread reuses from column to column.

    At 1M + 1M values a column needs about 160 MB of temporaries; allocated afresh for each
    column, every page of them faults in again (that cost a third of the statistic's time).
    """

    def __init__(self) -> None:
        self.size = -1

    def fit(self, size: int) -> None:
        if size > self.size:
            self.pooled, self.merged = np.empty(size), np.empty(size)
            self.from_a, self.equal_next = np.empty(size, dtype=bool), np.empty(size, dtype=bool)
            self.count_a, self.count_b = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
            self.positions = np.arange(1, size + 1, dtype=np.int64)
            self.share_a, self.share_b = np.empty(size), np.empty(size)
            self.size = size

    def load_sorted(self, start: int, values: np.ndarray) -> int:
        """Put ``values``' finite values (NaN and +-inf left out) sorted at ``pooled[start:]``; their count."""
        target = self.pooled[start : start + values.shape[0]]
        np.copyto(target, values)  # the caller's array is never changed
        finite = np.isfinite(target)
        count = int(np.count_nonzero(finite))
        if count < target.shape[0]:
            target[:count] = target[finite]
        target[:count].sort()  # -0.0 and 0.0 stay one tie, as for scipy
        return count

    def statistic(self, n1: int, n2: int) -> float:
        """Two-sided D of ``pooled[:n1]`` against ``pooled[n1:n1 + n2]``, both sorted and non-empty (see the module docstring)."""
        total = n1 + n2
        pooled = self.pooled[:total]
        order = np.argsort(pooled, kind="stable")  # two sorted runs: one merge
        merged = np.take(pooled, order, out=self.merged[:total])
        count_a = np.cumsum(np.less(order, n1, out=self.from_a[:total]), out=self.count_a[:total])
        count_b = np.subtract(self.positions[:total], count_a, out=self.count_b[:total])
        # scipy's expression, cdf1 - cdf2 with cdf1 = count_a / n1 and cdf2 = count_b / n2, at every position;
        # a position followed by an equal value is not the end of its run and counts for neither extreme.
        differences = np.subtract(np.divide(count_a, n1, out=self.share_a[:total]), np.divide(count_b, n2, out=self.share_b[:total]), out=self.share_a[:total])
        inside_runs = np.flatnonzero(np.equal(merged[1:], merged[:-1], out=self.equal_next[: total - 1]))  # -0.0 == 0.0, as for scipy
        differences[inside_runs] = -np.inf
        max_s = differences.max()
        differences[inside_runs] = np.inf
        min_s = differences.min()
        min_s = np.clip(-min_s, 0, 1)
        return float(min_s if min_s > max_s else max_s)  # scipy's choice: on a tie, max_s (0.0 where min_s is -0.0)


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
    workers: int | None = None,
) -> KSColumnsResult:
    """
    Two-sided two-sample KS test of every column of ``current`` against the same column of ``reference``.

    :param reference: rows x features; NaN and +-inf are dropped and counted per column.
    :param current: rows x the same features.
    :param method: ``"auto"``, ``"exact"`` or ``"asymp"``, as in ``scipy.stats.ks_2samp``.
    :param fast_tail: the closed-form p-value in scipy's slow tail (see the module docstring);
        ``False`` gives scipy's value everywhere.
    :param feature_names: names for error messages (default: the column index).
    :param workers: threads that sort and measure columns at once (default: one per CPU this
        process may use; fewer where their workspaces, about 82 bytes a value of both samples
        each, would pass ``WORKSPACE_BUDGET_BYTES``). Results do not depend on it.
    :raises DriftInputError: on mismatched shapes or a column without any finite value.
    """
    if method not in ("auto", "exact", "asymp"):
        raise DriftInputError(f"method must be auto, exact or asymp; got {method!r}")
    if workers is not None and workers < 1:
        raise DriftInputError(f"workers must be at least 1; got {workers}")
    reference, current = _as_2d("reference", reference), _as_2d("current", current)
    if reference.shape[1] != current.shape[1]:
        raise DriftInputError(f"reference has {reference.shape[1]} features but current has {current.shape[1]}")
    features = reference.shape[1]
    names = list(feature_names) if feature_names is not None else None

    workspaces = threading.local()

    def measured(column: int) -> tuple[float, int, int]:
        workspace = getattr(workspaces, "arrays", None) or _Workspace()
        workspaces.arrays = workspace
        workspace.fit(reference.shape[0] + current.shape[0])
        n1 = workspace.load_sorted(0, reference[:, column])
        n2 = workspace.load_sorted(n1, current[:, column])
        if n1 == 0 or n2 == 0:
            return math.nan, n1, n2
        return workspace.statistic(n1, n2), n1, n2

    # numpy releases the GIL while it sorts and merges: one column per thread keeps every core busy, and
    # each thread holds one column's workspace (160 MB at 1M + 1M values), within WORKSPACE_BUDGET_BYTES.
    threads = min(
        features, workers or default_workers(), max(1, WORKSPACE_BUDGET_BYTES // (WORKSPACE_BYTES_PER_VALUE * (reference.shape[0] + current.shape[0])))
    )
    if threads > 1:
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ks-column")
        try:
            measures = list(pool.map(measured, range(features)))
        finally:
            pool.shutdown(cancel_futures=True)  # an error (or a kill) leaves no queued column running
    else:
        measures = [measured(column) for column in range(features)]
    statistic, pvalue, error = np.empty(features), np.empty(features), np.zeros(features)
    n_reference, n_current = np.empty(features, dtype=np.int64), np.empty(features, dtype=np.int64)
    methods: list[str] = []
    for column, (d, n1, n2) in enumerate(measures):
        if n1 == 0 or n2 == 0:
            side = "reference" if n1 == 0 else "current"
            name = repr(names[column]) if names is not None else str(column)
            raise DriftInputError(f"feature {name} has no finite value in the {side} sample: it cannot be tested")
        statistic[column], pvalue[column], used, error[column] = _pvalue(n1, n2, d, method, fast_tail)
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
