"""Drift between the champion's reference sample and a window of production data.

Reads the data, turns it into the arrays ``stats/drift_assessment.py`` tests, finds the day the
drift began, and writes the summary that ``drift_monitor_<model>`` hands to the retrain it
triggers. No Airflow here; pandas and pyarrow are imported when used.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_airflow.constants import DRIFT_RUN_ID_PREFIX, PARTITION_KEY
from mlops_airflow.core.partitions import read_window
from mlops_airflow.core.payloads import DriftSummary, FeatureDrift
from mlops_airflow.stats.drift_assessment import MULTIVARIATE_FEATURE, DriftAssessment, DriftThresholds, assess_drift

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.specs import ModelSpec


@dataclass(frozen=True)
class DriftCheck:
    """One look at one window."""

    window_start: dt.date
    window_end: dt.date  # exclusive
    rows: int
    assessment: DriftAssessment
    onset: dt.date | None = None

    @property
    def drifted(self) -> bool:
        return self.assessment.drifted


def drift_features(spec: ModelSpec) -> tuple[list[str], list[str]]:
    """(numeric, categorical) features the spec watches, in the spec's order."""
    chosen = set(spec.drift.features or spec.features.columns)
    return [c for c in spec.features.numeric if c in chosen], [c for c in spec.features.categorical if c in chosen]


def thresholds(spec: ModelSpec) -> DriftThresholds:
    drift = spec.drift
    return DriftThresholds(alpha=drift.alpha, min_effect=drift.min_effect, min_samples=drift.min_samples)


def assess_frames(reference: pd.DataFrame, current: pd.DataFrame, spec: ModelSpec, *, multivariate: bool = True) -> DriftAssessment:
    """Test the watched features of ``current`` against ``reference`` (with the domain classifier when the spec and ``multivariate`` say so)."""
    import numpy as np

    numeric, categorical = drift_features(spec)
    missing = [c for c in (*numeric, *categorical) if c not in reference.columns or c not in current.columns]
    if missing:
        from mlops_airflow.stats.ks import DriftInputError

        raise DriftInputError(f"features {missing} are missing from the reference sample or the current window")

    def as_float(frame: pd.DataFrame):
        import pandas as pd

        return np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) for c in numeric])

    return assess_drift(
        numeric_names=numeric,
        reference_numeric=as_float(reference) if numeric else None,
        current_numeric=as_float(current) if numeric else None,
        categorical_reference={c: reference[c].to_numpy(dtype=object) for c in categorical},
        categorical_current={c: current[c].to_numpy(dtype=object) for c in categorical},
        thresholds=thresholds(spec),
        multivariate=multivariate and spec.drift.multivariate,
    )


def find_onset(reference: pd.DataFrame, frame: pd.DataFrame, spec: ModelSpec, window_end: dt.date) -> dt.date | None:
    """
    The drift onset: the earliest day of the look-back range from which every day up to the
    window's last day drifts, each day tested alone with the per-feature statistics (the domain
    classifier, a fit per test, judges the window only). ``None`` when the last day does not
    drift on its own (a drift seen only across the whole window, or by the classifier alone).

    ``frame`` holds the look-back range with its ``dt`` column.
    """
    onset = None
    day = window_end - dt.timedelta(days=1)
    first = window_end - dt.timedelta(days=spec.drift.lookback_days)
    while day >= first:
        rows = frame[frame[PARTITION_KEY] == day]
        if rows.empty or not assess_frames(reference, rows, spec, multivariate=False).drifted:
            break
        onset = day
        day -= dt.timedelta(days=1)
    return onset


def check_window(reference: pd.DataFrame, spec: ModelSpec, window_end: dt.date, *, with_onset: bool = True) -> DriftCheck:
    """Read and test the current window; only when it drifts, read the look-back range for the onset."""
    window_start = window_end - dt.timedelta(days=spec.drift.window_days)
    numeric, categorical = drift_features(spec)
    columns = [*numeric, *categorical]
    current = read_window(spec.data.uri, window_start, window_end, columns=columns).frame
    assessment = assess_frames(reference, current, spec)
    onset = None
    if assessment.drifted and with_onset:
        earlier = read_window(spec.data.uri, window_end - dt.timedelta(days=spec.drift.lookback_days), window_start, columns=columns).frame
        import pandas as pd

        lookback = pd.concat([frame for frame in (earlier, current) if len(frame)], ignore_index=True)
        onset = find_onset(reference, lookback, spec, window_end) or window_start
    return DriftCheck(window_start=window_start, window_end=window_end, rows=len(current), assessment=assessment, onset=onset)


def drift_run_id(onset: dt.date, window_end: dt.date) -> str:
    """The retrain run id of one drift window: repeated alarms on the same window start one run."""
    return f"{DRIFT_RUN_ID_PREFIX}__{onset.isoformat()}__{window_end.isoformat()}"


def summary(check: DriftCheck, spec: ModelSpec, champion_version: str) -> DriftSummary:
    """What the sensor returns and the retrain is told (its ``drift`` Param)."""
    assessment = check.assessment
    onset = check.onset or check.window_start
    return DriftSummary(
        model=spec.name,
        champion_version=str(champion_version),
        window_start=check.window_start,
        window_end=check.window_end,
        onset=onset,
        rows=check.rows,
        drifted_features=tuple(assessment.drifted_features),
        features={f.feature: FeatureDrift(f.test, f.statistic, f.effect, f.pvalue, f.qvalue, f.verdict) for f in assessment.features},
        thresholds={"alpha": spec.drift.alpha, "min_effect": spec.drift.min_effect, "min_samples": spec.drift.min_samples},
        retrain_run_id=drift_run_id(onset, check.window_end),
    )


def summary_table(check: DriftCheck) -> str:
    """A short table for the task log."""
    lines = [f"{'feature':<28}{'test':<18}{'effect':>9}{'p':>12}{'q':>12}  verdict"]
    for f in check.assessment.features:
        effect = "-" if f.effect is None else f"{f.effect:.4f}"
        p = "-" if f.pvalue is None else f"{f.pvalue:.3g}"
        q = "-" if f.qvalue is None else f"{f.qvalue:.3g}"
        lines.append(f"{f.feature:<28}{f.test:<18}{effect:>9}{p:>12}{q:>12}  {f.verdict}")
    return "\n".join(lines)


DRIFT_HISTORY_PREFIX = "drift."
_METRIC_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]+")


def history_metric_name(feature: str) -> str:
    """A feature as MLflow metric keys allow it: the multivariate test is ``all_features``; other characters become ``_``."""
    if feature == MULTIVARIATE_FEATURE:
        return "all_features"
    return _METRIC_KEY_UNSAFE.sub("_", feature).strip("_ ") or "_"


def history_metrics(check: DriftCheck) -> list[tuple[str, float, dt.date]]:
    """The check as day metrics for the champion's run: ``drift.<feature>.p_value`` and ``.effect``, on the window's last day.

    Only tested features appear; the Models page draws them over time.
    """
    day = check.window_end - dt.timedelta(days=1)
    rows: list[tuple[str, float, dt.date]] = []
    for feature in check.assessment.features:
        if feature.pvalue is None:
            continue
        name = history_metric_name(feature.feature)
        rows.append((f"{DRIFT_HISTORY_PREFIX}{name}.p_value", feature.pvalue, day))
        effect = feature.statistic if feature.test == "domain_classifier" else feature.effect
        if effect is not None:
            rows.append((f"{DRIFT_HISTORY_PREFIX}{name}.effect", effect, day))
    return rows
