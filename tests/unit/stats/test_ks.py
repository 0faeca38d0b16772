"""ks_2samp_columns against scipy.stats.ks_2samp, column pair by column pair; Benjamini-Hochberg."""

from __future__ import annotations

import numpy as np
import pytest
from sampling import replay_hint, sampled
from scipy.stats import false_discovery_control, ks_2samp

from mlops_airflow.stats.ks import DriftInputError, benjamini_hochberg, ks_2samp_columns


def _column_pair(rng: np.random.Generator, case: int) -> tuple[np.ndarray, np.ndarray]:
    """One random pair from a corpus of shapes that break naive implementations."""
    kind = case % 6
    if kind == 0:  # small samples, exact p-values, n1 != n2
        n1, n2 = rng.integers(1, 60, size=2)
    elif kind == 1:  # equal sizes: scipy's square-lattice exact path
        n1 = n2 = int(rng.integers(2, 400))
    elif kind == 2:  # large: the asymptotic path
        n1, n2 = rng.integers(10_001, 40_000, size=2)
    else:
        n1, n2 = rng.integers(5, 2_000, size=2)
    shift = rng.choice([0.0, 0.05, 0.3, 1.0])
    a, b = rng.normal(size=n1), rng.normal(shift, 1.0 + rng.random(), size=n2)
    if kind == 3:  # heavy ties: a handful of distinct values
        a, b = np.round(a), np.round(b)
    if kind == 4:  # integer columns (counts)
        a, b = rng.poisson(2.0, size=n1).astype(float), rng.poisson(2.0 + shift, size=n2).astype(float)
    if kind == 5:  # NaN and +-inf sprinkled in, and signed zeros
        a[rng.random(n1) < 0.2] = np.nan
        b[rng.random(n2) < 0.2] = rng.choice([np.nan, np.inf, -np.inf])
        a[rng.random(n1) < 0.1] = -0.0
        b[rng.random(n2) < 0.1] = 0.0
    return a, b


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


CORPUS_SEED = 20261122
CORPUS_SIZE = 1200
LARGE = 2  # _column_pair's kind whose scipy p-value (asymptotic, n up to 40,000) costs ~40 ms a pair


def corpus_cases() -> list[int]:
    """The corpus cases a run checks: every small, equal-size, tied, integer and non-finite one; 20 of the 200 large ones.

    The large pairs all take the same asymptotic path (their D is checked the same way as the
    others'); a different 20 each run, so that runs cover all of them.
    """
    large = [case for case in range(CORPUS_SIZE) if case % 6 == LARGE]
    return sorted([case for case in range(CORPUS_SIZE) if case % 6 != LARGE] + sampled(large, 20, salt="ks-corpus"))


def test_agrees_with_scipy_on_a_corpus_of_column_pairs():
    checked = mismatched_d = worst_p = fast_tails = 0
    methods = set()
    cases = corpus_cases()
    for start in range(0, len(cases), 4):
        pairs = [_column_pair(np.random.default_rng([CORPUS_SEED, case]), case) for case in cases[start : start + 4]]
        rows = max(max(len(a), len(b)) for a, b in pairs)
        reference = np.full((rows, len(pairs)), np.nan)
        current = np.full((rows, len(pairs)), np.nan)
        for column, (a, b) in enumerate(pairs):
            reference[: len(a), column], current[: len(b), column] = a, b
        if any(len(_finite(a)) == 0 or len(_finite(b)) == 0 for a, b in pairs):
            continue
        result = ks_2samp_columns(reference, current, fast_tail=False)
        fast = ks_2samp_columns(reference, current)
        for column, (a, b) in enumerate(pairs):
            expected = ks_2samp(_finite(a), _finite(b))
            mismatched_d += result.statistic[column] != expected.statistic
            mismatched_d += fast.statistic[column] != expected.statistic
            worst_p = max(worst_p, abs(result.pvalue[column] - expected.pvalue))
            assert abs(fast.pvalue[column] - expected.pvalue) <= fast.pvalue_error[column] + 1e-12, f"case {cases[start + column]}; {replay_hint()}"
            methods.add(result.method[column])
            fast_tails += fast.pvalue_error[column] > 0
            checked += 1
    print(f"\nKS corpus: {checked} column pairs checked ({replay_hint()})")
    assert checked >= 900
    assert mismatched_d == 0, replay_hint()  # bit for bit
    assert worst_p <= 1e-9, replay_hint()
    assert methods == {"exact", "asymp"}
    assert fast_tails > 0, replay_hint()  # the corpus reaches the closed-form tail


# The closed-form tail's error grid: effective sample sizes n x tail depths n d^2 (d the statistic).
TAIL_NS = tuple(int(n) for n in np.unique(np.geomspace(10_001, 3_000_000, 14).astype(int)))
TAIL_DEPTHS = tuple(float(x) for x in np.geomspace(2.2 * (1 + 1e-9), 400, 25))
# scipy's kstwo.sf costs up to 2 s a point for n between these; outside them it is milliseconds.
SLOW_NS = (30_000, 1_000_000)


def tail_grid() -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The grid points every run checks, and those it samples from.

    Always: every depth at the cheap sizes, and at every size the tail's entry (n d^2 = 2.2,
    where the closed form is furthest from scipy) and its far end. The remaining points of
    the slow sizes, where |error| x n is smaller and nearly the same for every n, are sampled.
    """
    always, sampled_from = [], []
    for n in TAIL_NS:
        for index, depth in enumerate(TAIL_DEPTHS):
            edge = index in (0, len(TAIL_DEPTHS) - 1)
            (always if edge or not SLOW_NS[0] < n < SLOW_NS[1] else sampled_from).append((n, depth))
    return always, sampled_from


def test_the_closed_form_tail_is_within_its_bound_of_scipy():
    """On a grid of effective sample sizes and statistics across the whole fast tail."""
    from scipy.stats import kstwo

    from mlops_airflow.stats.ks import FAST_TAIL_MIN_N, TAIL_ERROR_PER_N, _asymp_pvalue

    always, sampled_from = tail_grid()
    assert TAIL_NS[0] == FAST_TAIL_MIN_N + 1  # the grid starts where the closed form does
    points = always + sampled(sampled_from, 12, salt="ks-tail")
    worst, where = 0.0, None
    for n, depth in points:
        d = np.sqrt(depth / n)
        fast, bound = _asymp_pvalue(2 * n, 2 * n, d, fast_tail=True)  # effective n = n
        assert bound == TAIL_ERROR_PER_N / n
        error = abs(fast - kstwo.sf(d, n)) * n
        if error > worst:
            worst, where = error, (n, depth)
    print(f"\nclosed-form tail: worst |p - scipy| x n = {worst:.4f} at (n, n d^2) = {where}, {len(points)} points (bound {TAIL_ERROR_PER_N})")
    assert worst <= TAIL_ERROR_PER_N, f"at (n, n d^2) = {where}; {replay_hint()}"


def test_decisions_with_fast_p_values_equal_decisions_with_scipys():
    """Benjamini-Hochberg at alpha 0.05 over 60 families of 10 features at 25,000 rows a sample
    (effective n 12,500: the fast tail) whose shifts put many p-values near the critical values."""
    from mlops_airflow.stats.drift_assessment import DriftThresholds, assess_drift

    rng = np.random.default_rng(4)
    names = [f"x{i}" for i in range(10)]
    settled = 0
    fast_tails = 0
    for _ in range(60):
        reference, current = rng.normal(size=(25_000, 10)), rng.normal(size=(25_000, 10))
        current += rng.choice([0.0, 0.01, 0.015, 0.02, 0.03], size=10)
        thresholds = DriftThresholds(alpha=0.05, min_effect=0.0, min_samples=1)
        decided = assess_drift(numeric_names=names, reference_numeric=reference, current_numeric=current, thresholds=thresholds)
        scipy_p = [ks_2samp(reference[:, j], current[:, j]).pvalue for j in range(10)]
        expected = (false_discovery_control(scipy_p) <= 0.05).tolist()
        assert [f.drifted for f in decided.features] == expected
        fast = ks_2samp_columns(reference, current)
        fast_tails += int((fast.pvalue_error > 0).sum())
        settled += sum(f.pvalue == p and e > 0 for f, p, e in zip(decided.features, scipy_p, fast.pvalue_error, strict=True))
    print(f"\n{fast_tails} fast-tail p-values; near a critical value and settled with scipy's: {settled}")
    assert fast_tails > 100


@pytest.mark.parametrize("method", ["exact", "asymp"])
def test_forced_methods_agree_with_scipy(method):
    rng = np.random.default_rng(3)
    reference, current = rng.normal(size=(300, 5)), rng.normal(0.2, size=(250, 5))
    result = ks_2samp_columns(reference, current, method=method, fast_tail=False)
    for column in range(5):
        expected = ks_2samp(reference[:, column], current[:, column], method=method)
        assert result.statistic[column] == expected.statistic
        assert abs(result.pvalue[column] - expected.pvalue) <= 1e-9
    assert set(result.method) == {method}


def test_non_finite_values_are_dropped_and_counted():
    reference = np.array([[1.0, 1.0], [2.0, np.nan], [np.inf, 3.0], [4.0, 4.0]])
    current = np.array([[1.5, -np.inf], [np.nan, 2.0], [3.0, 5.0]])
    result = ks_2samp_columns(reference, current)
    assert result.n_reference.tolist() == [3, 3]
    assert result.dropped_reference.tolist() == [1, 1]
    assert result.n_current.tolist() == [2, 2]
    assert result.dropped_current.tolist() == [1, 1]
    assert result.statistic[0] == ks_2samp([1.0, 2.0, 4.0], [1.5, 3.0]).statistic


def test_an_all_nan_column_is_an_error_not_no_drift():
    reference = np.random.default_rng(0).normal(size=(50, 3))
    current = reference.copy()
    current[:, 1] = np.nan
    with pytest.raises(DriftInputError, match="feature 1 has no finite value in the current sample"):
        ks_2samp_columns(reference, current)


def test_mismatched_features_and_bad_method_are_errors():
    with pytest.raises(DriftInputError, match="reference has 2 features but current has 3"):
        ks_2samp_columns(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(DriftInputError, match="method"):
        ks_2samp_columns(np.zeros((5, 2)), np.zeros((5, 2)), method="fast")
    with pytest.raises(DriftInputError, match="2-D"):
        ks_2samp_columns(np.zeros((5, 2, 2)), np.zeros((5, 2, 2)))


@pytest.mark.parametrize("rows", [1, 100, 12_000])  # 12,000: the asymptotic path, which keeps D as computed
def test_identical_samples_have_no_distance_and_a_positive_zero(rows):
    values = np.arange(rows, dtype=float)[:, None]
    result = ks_2samp_columns(values, values)
    assert result.statistic.tolist() == [0.0]
    assert not np.signbit(result.statistic[0]), "-0.0 where scipy gives 0.0 (a statsd gauge of -0.0 is a relative update)"
    assert result.pvalue.tolist() == [1.0]


def test_the_cpu_quota_of_a_cgroup_limits_the_threads(tmp_path):
    from mlops_airflow.stats.ks import _cgroup_cpu_quota

    quota = tmp_path / "cpu.max"
    quota.write_text("250000 100000\n")
    assert _cgroup_cpu_quota(str(quota)) == 3
    quota.write_text("max 100000\n")
    assert _cgroup_cpu_quota(str(quota)) is None
    assert _cgroup_cpu_quota(str(tmp_path / "absent")) is None
    with pytest.raises(DriftInputError, match="workers must be at least 1"):
        ks_2samp_columns(np.zeros((5, 1)), np.zeros((5, 1)), workers=0)


def test_results_do_not_depend_on_the_number_of_threads():
    rng = np.random.default_rng(5)
    reference, current = rng.normal(size=(400, 7)), rng.normal(0.3, size=(300, 7))
    reference[rng.random(reference.shape) < 0.05] = np.nan
    alone = ks_2samp_columns(reference, current, workers=1)
    for workers in (2, 3, 16):
        threaded = ks_2samp_columns(reference, current, workers=workers)
        assert np.array_equal(alone.statistic, threaded.statistic)
        assert np.array_equal(alone.pvalue, threaded.pvalue)
        assert np.array_equal(alone.n_reference, threaded.n_reference)


def test_threads_are_limited_by_the_workspace_budget(monkeypatch):
    import mlops_airflow.stats.ks as ks

    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=(500, 4)), rng.normal(size=(500, 4))
    started = []

    class Recording(ks.ThreadPoolExecutor):
        def __init__(self, max_workers, **kwargs):
            started.append(max_workers)
            super().__init__(max_workers, **kwargs)

    monkeypatch.setattr(ks, "ThreadPoolExecutor", Recording)
    ks_2samp_columns(reference, current, workers=4)
    monkeypatch.setattr(ks, "WORKSPACE_BUDGET_BYTES", 2 * ks.WORKSPACE_BYTES_PER_VALUE * 1000)  # two workspaces of 500 + 500 values
    ks_2samp_columns(reference, current, workers=4)
    monkeypatch.setattr(ks, "WORKSPACE_BUDGET_BYTES", 1)
    ks_2samp_columns(reference, current, workers=4)  # one thread: no pool
    assert started == [4, 2]


def test_the_callers_arrays_are_left_as_they_were():
    rng = np.random.default_rng(8)
    reference, current = rng.normal(size=(200, 3)), rng.normal(size=(150, 3))
    reference[3, 1] = np.inf
    before = reference.copy(), current.copy()
    ks_2samp_columns(reference, current)
    assert np.array_equal(reference, before[0], equal_nan=True)
    assert np.array_equal(current, before[1])


def test_benjamini_hochberg_matches_scipy_and_skips_untested_features():
    rng = np.random.default_rng(9)
    for _ in range(50):
        p = rng.random(int(rng.integers(1, 40))) ** 3
        assert np.allclose(benjamini_hochberg(p), false_discovery_control(p), rtol=0, atol=1e-15)
    with_gaps = np.array([0.01, np.nan, 0.04, np.nan])
    adjusted = benjamini_hochberg(with_gaps)
    assert np.isnan(adjusted[[1, 3]]).all()
    assert np.allclose(adjusted[[0, 2]], false_discovery_control([0.01, 0.04]))
    assert np.isnan(benjamini_hochberg(np.array([np.nan]))).all()


def test_a_fast_p_value_near_a_critical_value_is_settled_with_scipys(monkeypatch):
    """Widen the bound so that every fast tail value reaches a critical value: all are replaced."""
    import mlops_airflow.stats.ks as ks
    from mlops_airflow.stats.drift_assessment import DriftThresholds, assess_drift

    rng = np.random.default_rng(6)
    reference, current = rng.normal(size=(25_000, 3)), rng.normal(0.04, size=(25_000, 3))
    fast = ks_2samp_columns(reference, current)
    assert (fast.pvalue_error > 0).all()
    monkeypatch.setattr(ks, "TAIL_ERROR_PER_N", 1e6)
    decided = assess_drift(numeric_names=["a", "b", "c"], reference_numeric=reference, current_numeric=current, thresholds=DriftThresholds(min_samples=1))
    assert [f.pvalue for f in decided.features] == [ks_2samp(reference[:, j], current[:, j]).pvalue for j in range(3)]
