"""Multivariate drift: can a classifier tell the current window from the reference sample?

Per-feature tests see each feature's marginal distribution. A change in how features move
together (a correlation that flips, one segment that grows while another shrinks) can leave
every marginal where it was, and then every per-feature test passes. The domain classifier
test (a classifier two-sample test) fits a random forest to tell reference rows (label 0)
from current rows (label 1) on half of each sample, and scores the other half. A forest of
50 trees on one thread (measured on a busy 2-core machine: about 0.4 s for 5,000 reference
and 2,000 current rows, where a gradient-boosted classifier's OpenMP threads took 2.7 s).

The p-value needs no permutations. The classifier never saw the held-out rows, so under no
drift their scores are exchangeable between the two samples, whatever the classifier
learned: the one-sided Mann-Whitney U test of the held-out current scores against the
held-out reference scores holds its level, and U / (n_reference n_current) is the held-out
ROC AUC. One fit, one rank test.

The effect is ``2 AUC - 1``: 0 when the samples cannot be told apart, 1 when every current row
scores above every reference row. It is on the same [0, 1] scale as KS's D and the total
variation distance, and the same floor (``drift.min_effect``) applies. For a shift of one
normal feature whose KS D is 0.1, a perfect classifier reaches ``2 AUC - 1 = 0.14``.

Pure numpy, scipy and scikit-learn; no Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

MAX_ROWS = 20_000  # rows of each sample used at most (a seeded random subset): bounds the cost
MIN_LEAF_ROWS = 20  # the forest's smallest leaf
MIN_ROWS = 4 * MIN_LEAF_ROWS  # fewer rows in a sample: half of it could not fill two leaves
MAX_CATEGORIES = 250  # categories beyond the 249 most frequent share one code
SEED = 20_261_206


@dataclass(frozen=True)
class DomainClassifierResult:
    auc: float  # held-out ROC AUC of telling current rows from reference rows
    pvalue: float  # one-sided Mann-Whitney U on the held-out scores
    n_reference: int  # held-out rows scored
    n_current: int

    @property
    def effect(self) -> float:
        return max(0.0, 2.0 * self.auc - 1.0)


def _encoded(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category labels of both samples as shared integer codes; beyond MAX_CATEGORIES the rarest share one code."""
    categories, codes = np.unique(np.concatenate([reference, current]).astype(str), return_inverse=True)
    if len(categories) > MAX_CATEGORIES:
        ranked = np.argsort(-np.bincount(codes, minlength=len(categories)), kind="stable")
        remap = np.full(len(categories), MAX_CATEGORIES - 1)
        remap[ranked[: MAX_CATEGORIES - 1]] = np.arange(MAX_CATEGORIES - 1)
        codes = remap[codes]
    codes = codes.astype(np.float64)
    return codes[: len(reference)], codes[len(reference) :]


def _subset(rows: int, rng: np.random.Generator) -> np.ndarray:
    chosen = rng.permutation(rows)[:MAX_ROWS]
    return np.sort(chosen)


def _rows(name: str, numeric: np.ndarray | None, categorical: Mapping[str, np.ndarray]) -> int:
    """The sample's row count, the same in every input, and enough to fit and score."""
    from mlops_airflow.stats.ks import DriftInputError

    counts = {len(values) for values in categorical.values()} | ({len(numeric)} if numeric is not None else set())
    if len(counts) != 1:
        raise DriftInputError(f"the {name} sample's features have different row counts: {sorted(counts)}" if counts else f"the {name} sample has no feature")
    (rows,) = counts
    if rows < MIN_ROWS:
        raise DriftInputError(f"the {name} sample has {rows} rows; the domain classifier needs at least {MIN_ROWS}")
    return rows


def domain_classifier_test(
    *,
    reference_numeric: np.ndarray | None,
    current_numeric: np.ndarray | None,
    categorical_reference: Mapping[str, np.ndarray],
    categorical_current: Mapping[str, np.ndarray],
    seed: int = SEED,
) -> DomainClassifierResult:
    """
    Fit on half of each sample, score the other half: the held-out AUC and its rank-test p-value.

    :param reference_numeric: rows x numeric features (NaN and +-inf allowed: the forest routes
        missing values itself), or None when there is no numeric feature.
    :param current_numeric: the current window's, the same features.
    :param categorical_reference: category labels per categorical feature (``(missing)`` a label).
    :param categorical_current: the current window's, the same features.
    :param seed: the subsets, the split and the classifier are seeded: the same inputs give the same result.
    :raises DriftInputError: fewer than ``MIN_ROWS`` rows in a sample, or inputs of different lengths.
    """
    from scipy.stats import mannwhitneyu
    from sklearn.ensemble import RandomForestClassifier

    numeric = reference_numeric is not None and current_numeric is not None
    rng = np.random.default_rng(seed)
    reference_rows = _subset(_rows("reference", reference_numeric if numeric else None, categorical_reference), rng)
    current_rows = _subset(_rows("current", current_numeric if numeric else None, categorical_current), rng)
    reference_columns, current_columns = [], []
    if numeric:
        for sample, rows, columns in ((reference_numeric, reference_rows, reference_columns), (current_numeric, current_rows, current_columns)):
            values = np.asarray(sample, dtype=np.float64)[rows]
            columns.append(np.where(np.isfinite(values), values, np.nan))  # +-inf is missing too, as for the KS tests
    for name in categorical_reference:
        ref_codes, cur_codes = _encoded(np.asarray(categorical_reference[name])[reference_rows], np.asarray(categorical_current[name])[current_rows])
        reference_columns.append(ref_codes[:, None])
        current_columns.append(cur_codes[:, None])
    reference, current = np.hstack(reference_columns), np.hstack(current_columns)
    fit_reference, fit_current = rng.permutation(len(reference)) < len(reference) // 2, rng.permutation(len(current)) < len(current) // 2
    # Category codes split like numbers: a forest reaches any group of categories in a few splits.
    classifier = RandomForestClassifier(n_estimators=50, max_depth=8, min_samples_leaf=MIN_LEAF_ROWS, class_weight="balanced", n_jobs=1, random_state=seed)
    classifier.fit(
        np.vstack([reference[fit_reference], current[fit_current]]),
        np.concatenate([np.zeros(int(fit_reference.sum())), np.ones(int(fit_current.sum()))]),
    )
    held_reference = classifier.predict_proba(reference[~fit_reference])[:, 1]
    held_current = classifier.predict_proba(current[~fit_current])[:, 1]
    test = mannwhitneyu(held_current, held_reference, alternative="greater", method="asymptotic")
    return DomainClassifierResult(
        auc=float(test.statistic) / (len(held_current) * len(held_reference)),
        pvalue=float(test.pvalue),
        n_reference=len(held_reference),
        n_current=len(held_current),
    )
