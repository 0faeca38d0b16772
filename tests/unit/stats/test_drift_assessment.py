"""Drift decisions by simulation (seeded): false alarms, power, the effect floor, the minimum sample size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from mlops_airflow.stats.drift_assessment import DriftThresholds, assess_drift
from mlops_airflow.stats.ks import DriftInputError

FEATURES = [f"x{i}" for i in range(20)]
SEED = 20261122  # one seed for every simulation, fixed before the first run


def _assess(reference, current, **thresholds):
    return assess_drift(
        numeric_names=FEATURES[: reference.shape[1]], reference_numeric=reference, current_numeric=current, thresholds=DriftThresholds(**thresholds)
    )


def test_false_alarms_with_and_without_the_correction():
    """20 features, none drifting, 200 repetitions: any false alarm counts once per repetition.

    The sizes are the product's: a 5,000-row reference sample against a 2,000-row day.
    """
    rng = np.random.default_rng(SEED)
    corrected = uncorrected = 0
    for _ in range(200):
        reference, current = rng.normal(size=(5000, 20)), rng.normal(size=(2000, 20))
        assessment = _assess(reference, current, min_effect=0.0)
        corrected += assessment.drifted
        uncorrected += any(f.pvalue <= 0.05 for f in assessment.features)
    print(f"\nfamily-wise false alarm rate: {corrected / 200:.3f} with Benjamini-Hochberg, {uncorrected / 200:.3f} without")
    assert corrected / 200 <= 0.06
    assert 0.5 <= uncorrected / 200 <= 0.78  # 1 - 0.95**20 = 0.64


def test_power_for_half_a_standard_deviation_at_n_5000():
    rng = np.random.default_rng(SEED)
    detected = 0
    for _ in range(40):
        reference, current = rng.normal(size=(5000, 20)), rng.normal(size=(5000, 20))
        current[:, 3] += 0.5
        assessment = _assess(reference, current)
        detected += assessment.drifted_features == ["x3"]
    print(f"\npower at 0.5 sd, n=5000: {detected}/40")
    assert detected / 40 >= 0.95


def test_a_tiny_shift_in_a_huge_window_is_significant_but_below_the_effect_floor():
    rng = np.random.default_rng(SEED)
    reference, current = rng.normal(size=(1_000_000, 1)), rng.normal(0.01, size=(1_000_000, 1))
    floored = _assess(reference, current)
    unfloored = _assess(reference, current, min_effect=0.0)
    assert unfloored.drifted  # 0.01 sd is detectable at this n ...
    assert not floored.drifted  # ... and too small to start a retrain
    assert floored.features[0].verdict == "below the effect floor"


def test_a_window_below_the_minimum_size_is_not_tested():
    rng = np.random.default_rng(SEED)
    reference, current = rng.normal(size=(5000, 3)), rng.normal(3.0, size=(400, 3))
    assessment = _assess(reference, current, min_samples=500)
    assert not assessment.drifted
    assert not assessment.tested
    assert {f.verdict for f in assessment.features} == {"too few values"}
    assert all(f.qvalue is None for f in assessment.features)


def test_categorical_features_use_chi_squared_under_the_same_correction():
    rng = np.random.default_rng(SEED)
    reference = rng.choice(["a", "b", "c", None], size=3000, p=[0.5, 0.3, 0.15, 0.05])
    current = rng.choice(["a", "b", "c", None], size=2000, p=[0.3, 0.3, 0.3, 0.1])
    same = rng.choice(["a", "b", "c", None], size=2000, p=[0.5, 0.3, 0.15, 0.05])
    assessment = assess_drift(categorical_reference={"plan": reference, "region": reference}, categorical_current={"plan": current, "region": same})
    assert assessment.drifted_features == ["plan"]
    plan = assessment.feature("plan")
    labels = ["a", "b", "c", None]
    table = [[sum(1 for x in reference if x == v) for v in labels], [sum(1 for x in current if x == v) for v in labels]]
    chi2, p, *_ = chi2_contingency(table, correction=False)
    assert plan.statistic == pytest.approx(chi2, rel=1e-12)
    assert plan.pvalue == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert plan.effect == pytest.approx(0.5 * (0.2 + 0.0 + 0.15 + 0.05), abs=0.05)
    assert assessment.feature("region").verdict == "not significant"


def test_an_all_nan_numeric_feature_is_an_error():
    reference = np.random.default_rng(0).normal(size=(600, 2))
    current = reference.copy()
    current[:, 0] = np.nan
    with pytest.raises(DriftInputError, match="no finite value"):
        _assess(reference, current)


@pytest.mark.parametrize(("field", "value"), [("alpha", 0.0), ("alpha", 1.0), ("min_effect", 1.5), ("min_samples", 0)])
def test_thresholds_are_validated(field, value):
    with pytest.raises(DriftInputError, match=field):
        DriftThresholds(**{field: value})
