"""The domain classifier test: it sees a change in how features move together that every per-feature test misses."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_airflow.stats.domain_classifier import MAX_CATEGORIES, domain_classifier_test
from mlops_airflow.stats.drift_assessment import MULTIVARIATE_FEATURE, DriftThresholds, assess_drift

NAMES = ["tenure", "charges"]


def correlated(rng: np.random.Generator, rows: int, correlation: float) -> np.ndarray:
    """Two standard normal features with this correlation: the marginals never change."""
    first = rng.normal(size=rows)
    second = correlation * first + np.sqrt(1 - correlation**2) * rng.normal(size=rows)
    return np.column_stack([first, second])


def segments(rng: np.random.Generator, rows: int, *, swapped: bool) -> tuple[np.ndarray, np.ndarray]:
    """Half the rows north, half south; north spends more, or (swapped) south does: same marginals either way."""
    region = np.where(rng.random(rows) < 0.5, "north", "south")
    richer = (region == "south") if swapped else (region == "north")
    charges = rng.normal(size=rows) + np.where(richer, 1.5, -1.5)
    return charges[:, None], region.astype(object)


def test_a_correlation_that_appears_is_missed_by_every_marginal_and_caught_by_the_classifier():
    rng = np.random.default_rng(11)
    reference, current = correlated(rng, 5000, 0.0), correlated(rng, 5000, 0.8)
    thresholds = DriftThresholds(alpha=0.05, min_effect=0.1, min_samples=500)
    marginal = assess_drift(numeric_names=NAMES, reference_numeric=reference, current_numeric=current, thresholds=thresholds)
    joint = assess_drift(numeric_names=NAMES, reference_numeric=reference, current_numeric=current, thresholds=thresholds, multivariate=True)
    assert not marginal.drifted, "the per-feature tests were meant to see nothing: the marginals are the same"
    assert [f.feature for f in joint.features if f.drifted] == [MULTIVARIATE_FEATURE]
    classifier = joint.feature(MULTIVARIATE_FEATURE)
    print(
        f"\ncorrelation 0 -> 0.8: KS D {[round(f.effect, 3) for f in marginal.features]}; classifier AUC {classifier.statistic:.3f}, p {classifier.pvalue:.2g}"
    )
    assert classifier.statistic > 0.6
    assert classifier.effect == pytest.approx(2 * classifier.statistic - 1)
    assert classifier.qvalue <= 0.05
    # The features' own rows are the same with or without the classifier, but for the shared correction.
    assert [f.verdict for f in joint.features[:2]] == [f.verdict for f in marginal.features]


def test_segments_that_swap_with_the_same_marginals_are_caught_through_a_categorical_feature():
    rng = np.random.default_rng(12)
    (ref_charges, ref_region), (cur_charges, cur_region) = segments(rng, 4000, swapped=False), segments(rng, 4000, swapped=True)
    joint = assess_drift(
        numeric_names=["charges"],
        reference_numeric=ref_charges,
        current_numeric=cur_charges,
        categorical_reference={"region": ref_region},
        categorical_current={"region": cur_region},
        multivariate=True,
    )
    assert joint.drifted_features == [MULTIVARIATE_FEATURE]
    assert joint.feature(MULTIVARIATE_FEATURE).statistic > 0.9


def test_without_drift_the_classifier_seldom_alarms():
    """Thirty seeded windows from the reference distribution itself (one fit each, 1,000 rows a sample)."""
    rng = np.random.default_rng(13)
    pvalues, aucs = [], []
    regions = np.array(["north", "south", "east", "west", None], dtype=object)
    for _ in range(30):
        result = domain_classifier_test(
            reference_numeric=correlated(rng, 1000, 0.3),
            current_numeric=correlated(rng, 1000, 0.3),
            categorical_reference={"region": rng.choice(regions, 1000, p=[0.3, 0.3, 0.2, 0.15, 0.05])},
            categorical_current={"region": rng.choice(regions, 1000, p=[0.3, 0.3, 0.2, 0.15, 0.05])},
            seed=int(rng.integers(1 << 30)),
        )
        pvalues.append(result.pvalue)
        aucs.append(result.auc)
    alarms = sum(p <= 0.05 for p in pvalues)
    print(f"\nno drift: {alarms} of 30 p-values at most 0.05; AUC {min(aucs):.3f}..{max(aucs):.3f}")
    assert alarms <= 4
    assert max(aucs) < 0.55  # no window reaches the default effect floor (2 AUC - 1 = 0.1)


def test_too_few_rows_leave_the_classifier_untested_and_the_same_inputs_give_the_same_result():
    rng = np.random.default_rng(14)
    reference, current = correlated(rng, 300, 0.0), correlated(rng, 300, 0.9)
    few = assess_drift(numeric_names=NAMES, reference_numeric=reference, current_numeric=current, multivariate=True)
    assert (few.feature(MULTIVARIATE_FEATURE).pvalue, few.feature(MULTIVARIATE_FEATURE).verdict) == (None, "too few values")
    thresholds = DriftThresholds(min_samples=100)
    once = assess_drift(numeric_names=NAMES, reference_numeric=reference, current_numeric=current, thresholds=thresholds, multivariate=True)
    again = assess_drift(numeric_names=NAMES, reference_numeric=reference, current_numeric=current, thresholds=thresholds, multivariate=True)
    assert once.feature(MULTIVARIATE_FEATURE) == again.feature(MULTIVARIATE_FEATURE)


def test_missing_and_infinite_values_and_many_categories_are_taken_in():
    rng = np.random.default_rng(15)
    reference, current = correlated(rng, 2000, 0.0), correlated(rng, 2000, 0.0)
    reference[rng.random(reference.shape) < 0.1] = np.nan
    current[rng.random(current.shape) < 0.1] = np.inf
    labels = np.array([f"c{i}" for i in range(MAX_CATEGORIES * 2)], dtype=object)
    ref_labels, cur_labels = rng.choice(labels, 2000), rng.choice(labels, 2000)
    ref_labels[:50] = None
    result = domain_classifier_test(
        reference_numeric=reference,
        current_numeric=current,
        categorical_reference={"plan": ref_labels},
        categorical_current={"plan": cur_labels},
    )
    assert 0.0 <= result.pvalue <= 1.0
    assert (result.n_reference, result.n_current) == (1000, 1000)


def test_beyond_max_categories_the_rarest_share_one_code():
    from mlops_airflow.stats.domain_classifier import _encoded

    common = np.repeat([f"c{i}" for i in range(MAX_CATEGORIES - 1)], 3)
    rare = np.array([f"r{i}" for i in range(100)])
    reference, current = np.concatenate([common, rare[:50]]), np.concatenate([common, rare[50:]])
    ref_codes, cur_codes = _encoded(reference, current)
    assert len(np.unique(np.concatenate([ref_codes, cur_codes]))) == MAX_CATEGORIES
    assert len(np.unique(ref_codes[len(common) :])) == 1, "every rare category shares the last code"
    assert ref_codes[len(common)] == cur_codes[len(common)]
    assert len(np.unique(ref_codes[: len(common)])) == MAX_CATEGORIES - 1


def test_samples_too_small_for_the_forest_are_refused_by_name():
    from mlops_airflow.stats.domain_classifier import MIN_ROWS
    from mlops_airflow.stats.ks import DriftInputError

    rng = np.random.default_rng(16)
    with pytest.raises(DriftInputError, match=f"the current sample has 1 rows; the domain classifier needs at least {MIN_ROWS}"):
        domain_classifier_test(
            reference_numeric=correlated(rng, 500, 0.0), current_numeric=correlated(rng, 1, 0.0), categorical_reference={}, categorical_current={}
        )
    with pytest.raises(DriftInputError, match="different row counts"):
        domain_classifier_test(
            reference_numeric=correlated(rng, 500, 0.0),
            current_numeric=correlated(rng, 500, 0.0),
            categorical_reference={"plan": np.array(["a"] * 499, dtype=object)},
            categorical_current={"plan": np.array(["a"] * 500, dtype=object)},
        )
    tiny = assess_drift(
        numeric_names=NAMES,
        reference_numeric=correlated(rng, 50, 0.0),
        current_numeric=correlated(rng, 50, 0.9),
        thresholds=DriftThresholds(min_samples=1),
        multivariate=True,
    )
    assert tiny.feature(MULTIVARIATE_FEATURE).verdict == "too few values"
