"""Feature drift: which features of a current window differ from the reference sample, and by how much.

Numeric features: the two-sample KS test (``stats/ks.py``), effect size D. Categorical
features: Pearson's chi-squared test of homogeneity on the 2 x K table of category counts
(a missing value is a category of its own), effect size the total variation distance
(half the sum of absolute differences of the category shares; like D, a difference of
probabilities in [0, 1]). One Benjamini-Hochberg correction covers every tested feature.

A feature drifts when all three hold:

- its q-value is at most ``alpha`` (the false discovery rate),
- its effect is at least ``min_effect`` (a large sample makes a negligible shift
  significant; this floor is what keeps it from starting a retrain),
- both samples have at least ``min_samples`` usable values (otherwise it is not tested).

With ``multivariate=True`` one more test joins the same family: the domain classifier test
(``stats/domain_classifier.py``), reported as the pseudo-feature ``(all features)`` with its
held-out AUC as the statistic and ``2 AUC - 1`` as the effect. The rule is the features' rule:
its q-value (in the one Benjamini-Hochberg correction over every test) at most ``alpha``, its
effect at least ``min_effect``, and at least ``min_samples`` rows in both samples. A window
drifts when any feature or the classifier drifts; the false discovery rate stays ``alpha``
across all of them.

Pure numpy and scipy (scikit-learn for the classifier); no Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlops_airflow.stats.ks import DriftInputError, Method, benjamini_hochberg, exact_pvalue, ks_2samp_columns

MISSING_CATEGORY = "(missing)"
MULTIVARIATE_FEATURE = "(all features)"


@dataclass(frozen=True)
class DriftThresholds:
    alpha: float = 0.05
    min_effect: float = 0.1
    min_samples: int = 500

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise DriftInputError(f"alpha must be in (0, 1); got {self.alpha}")
        if not 0 <= self.min_effect <= 1:
            raise DriftInputError(f"min_effect must be in [0, 1]; got {self.min_effect}")
        if self.min_samples < 1:
            raise DriftInputError(f"min_samples must be at least 1; got {self.min_samples}")


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical | multivariate (the pseudo-feature MULTIVARIATE_FEATURE)
    test: str  # ks | chi2 | domain_classifier
    statistic: float | None  # D, the chi-squared statistic, or the classifier's held-out AUC
    effect: float | None  # D, or the total variation distance
    pvalue: float | None
    qvalue: float | None
    n_reference: int
    n_current: int
    dropped_reference: int
    dropped_current: int
    drifted: bool
    verdict: str  # drift | not significant | below the effect floor | too few values


@dataclass(frozen=True)
class DriftAssessment:
    features: tuple[FeatureDrift, ...]
    thresholds: DriftThresholds

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features)

    @property
    def tested(self) -> bool:
        """Whether any feature had enough values to be tested."""
        return any(f.pvalue is not None for f in self.features)

    def feature(self, name: str) -> FeatureDrift:
        return next(f for f in self.features if f.feature == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "thresholds": asdict(self.thresholds),
            "features": [asdict(f) for f in self.features],
        }


def _chi2_homogeneity(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """(chi-squared, p, total variation distance) of two samples of category labels."""
    from scipy.stats import chi2

    categories, codes = np.unique(np.concatenate([reference, current]), return_inverse=True)
    k = len(categories)
    ref_counts = np.bincount(codes[: len(reference)], minlength=k).astype(np.float64)
    cur_counts = np.bincount(codes[len(reference) :], minlength=k).astype(np.float64)
    tvd = 0.5 * float(np.abs(ref_counts / ref_counts.sum() - cur_counts / cur_counts.sum()).sum())
    if k < 2:
        return 0.0, 1.0, tvd
    table = np.stack([ref_counts, cur_counts])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return statistic, float(chi2.sf(statistic, k - 1)), tvd


def _settle_near_thresholds(rows: list[dict[str, Any]], alpha: float, method: Method) -> None:
    """Replace a fast KS p-value by scipy's wherever its error bound reaches a Benjamini-Hochberg
    critical value ``k * alpha / m``: then every comparison BH makes, and so every decision,
    is the one scipy's p-values would give."""
    tested = [row for row in rows if row["pvalue"] is not None]
    critical = alpha * np.arange(1, len(tested) + 1) / max(len(tested), 1)
    for row in tested:
        if row["_error"] > 0 and np.any(np.abs(critical - row["pvalue"]) <= row["_error"]):
            row["pvalue"] = exact_pvalue(row["n_reference"], row["n_current"], row["statistic"], method)
            row["_error"] = 0.0


def _labels(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Category labels as strings; None and NaN become one ``(missing)`` category."""
    labels = np.array(values, dtype=object)
    missing = np.equal(labels, None) | np.not_equal(labels, labels)  # None, or NaN (not equal to itself)
    labels[missing] = MISSING_CATEGORY
    return labels.astype(str)


def _domain_classifier_row(
    reference_numeric: np.ndarray | None,
    current_numeric: np.ndarray | None,
    categorical_reference: Mapping[str, Sequence[Any] | np.ndarray],
    categorical_current: Mapping[str, Sequence[Any] | np.ndarray],
    min_samples: int,
) -> dict[str, Any]:
    """The domain classifier test as one more row of the family, over all rows of both samples (it fits on
    half of at most ``MAX_ROWS`` and scores the other half); not run below ``min_samples`` rows
    (or the classifier's own ``MIN_ROWS``) in a sample."""
    from mlops_airflow.stats.domain_classifier import MIN_ROWS, domain_classifier_test

    n_reference = len(reference_numeric) if reference_numeric is not None else len(next(iter(categorical_reference.values()), ()))
    n_current = len(current_numeric) if current_numeric is not None else len(next(iter(categorical_current.values()), ()))
    row = {
        "feature": MULTIVARIATE_FEATURE,
        "kind": "multivariate",
        "test": "domain_classifier",
        "statistic": None,
        "effect": None,
        "pvalue": None,
        "n_reference": n_reference,
        "n_current": n_current,
        "dropped_reference": 0,
        "dropped_current": 0,
        "_error": 0.0,
    }
    if min(n_reference, n_current) < max(min_samples, MIN_ROWS):
        return row
    result = domain_classifier_test(
        reference_numeric=reference_numeric,
        current_numeric=current_numeric,
        categorical_reference={name: _labels(values) for name, values in categorical_reference.items()},
        categorical_current={name: _labels(values) for name, values in categorical_current.items()},
    )
    return {**row, "statistic": result.auc, "effect": result.effect, "pvalue": result.pvalue}


def assess_drift(
    *,
    numeric_names: Sequence[str] = (),
    reference_numeric: np.ndarray | None = None,
    current_numeric: np.ndarray | None = None,
    categorical_reference: Mapping[str, Sequence[Any]] | None = None,
    categorical_current: Mapping[str, Sequence[Any]] | None = None,
    thresholds: DriftThresholds | None = None,
    method: Method = "auto",
    multivariate: bool = False,
) -> DriftAssessment:
    """
    Test every numeric column (KS) and categorical feature (chi-squared) of the current window
    against the reference sample, under one Benjamini-Hochberg correction.

    :raises DriftInputError: a numeric feature without any finite value, or mismatched inputs.
    """
    thresholds = thresholds or DriftThresholds()
    rows: list[dict[str, Any]] = []
    if numeric_names:
        if reference_numeric is None or current_numeric is None:
            raise DriftInputError("numeric features were named but no numeric arrays given")
        ks = ks_2samp_columns(reference_numeric, current_numeric, method=method, feature_names=list(numeric_names))
        if len(numeric_names) != len(ks.statistic):
            raise DriftInputError(f"{len(numeric_names)} numeric names for {len(ks.statistic)} columns")
        for index, name in enumerate(numeric_names):
            rows.append(
                {
                    "feature": name,
                    "kind": "numeric",
                    "test": "ks",
                    "statistic": float(ks.statistic[index]),
                    "effect": float(ks.statistic[index]),
                    "pvalue": float(ks.pvalue[index]),
                    "n_reference": int(ks.n_reference[index]),
                    "n_current": int(ks.n_current[index]),
                    "dropped_reference": int(ks.dropped_reference[index]),
                    "dropped_current": int(ks.dropped_current[index]),
                    "_error": float(ks.pvalue_error[index]),
                }
            )
    categorical_reference = categorical_reference or {}
    categorical_current = categorical_current or {}
    if set(categorical_reference) != set(categorical_current):
        raise DriftInputError(f"categorical features differ: {sorted(categorical_reference)} vs {sorted(categorical_current)}")
    for name in categorical_reference:
        reference, current = _labels(categorical_reference[name]), _labels(categorical_current[name])
        statistic, pvalue, tvd = _chi2_homogeneity(reference, current) if len(reference) and len(current) else (None, None, None)
        rows.append(
            {
                "feature": name,
                "kind": "categorical",
                "test": "chi2",
                "statistic": statistic,
                "effect": tvd,
                "pvalue": pvalue,
                "n_reference": len(reference),
                "n_current": len(current),
                "dropped_reference": 0,
                "dropped_current": 0,
                "_error": 0.0,
            }
        )
    if multivariate:
        rows.append(_domain_classifier_row(reference_numeric, current_numeric, categorical_reference, categorical_current, thresholds.min_samples))
    for row in rows:
        if min(row["n_reference"], row["n_current"]) < thresholds.min_samples:
            row["pvalue"] = None
    _settle_near_thresholds(rows, thresholds.alpha, method)
    pvalues = np.array([np.nan if row["pvalue"] is None else row["pvalue"] for row in rows], dtype=np.float64)
    qvalues = benjamini_hochberg(pvalues)
    features = []
    for row, q in zip(rows, qvalues, strict=True):
        if row["pvalue"] is None:
            drifted, verdict, qvalue = False, "too few values", None
        else:
            qvalue = float(q)
            significant = qvalue <= thresholds.alpha
            large = row["effect"] >= thresholds.min_effect
            drifted = significant and large
            verdict = "drift" if drifted else ("below the effect floor" if significant else "not significant")
        row.pop("_error")
        features.append(FeatureDrift(**row, qvalue=qvalue, drifted=drifted, verdict=verdict))
    return DriftAssessment(features=tuple(features), thresholds=thresholds)
