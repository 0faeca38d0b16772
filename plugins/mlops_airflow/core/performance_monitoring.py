"""The champion judged on live outcomes: predictions joined with labels that arrived late.

Where it sits in the loop: ``performance_monitor_<model>`` reads each day's batch predictions
(``batch_score_<model>``'s output), the labels partition of that day once it is due, and the
champion's validation rows as it scored them when it was trained (its promotion-time
baseline). Per day it gives the realized metrics where labels have arrived, the estimated ones
where they have not yet (confidence-based estimation, calibrated on the validation rows), the
shift of the champion's outputs against its validation outputs (prediction drift), and, where
both estimate and labels exist, the concept-drift check. Over the labelled window it decides
whether the champion has decayed:

- below ``performance.floor``: even the bootstrap's upper bound of the window's metric is below it;
- below the baseline by more than ``performance.max_drop``: the bootstrap's lower bound of
  (baseline - window) is above it. Both samples are resampled independently (they are different
  rows), each resample pair giving one difference.

Pure pandas, numpy and SciPy; no Airflow.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlops_airflow.specs import PerformanceSpec

LABEL = "label"  # the joined frame's label column, whatever the target is called
POSITIVE_SCORE = "score"  # the joined frame's probability of the positive class


class PerformanceInputError(ValueError):
    """Predictions, labels or validation scores that cannot be joined or judged; the message names which."""


@dataclass(frozen=True)
class Baseline:
    """The champion's validation rows as it scored them at training time."""

    labels: np.ndarray
    scores: np.ndarray  # probability of the positive class
    segments: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class DayPerformance:
    """One day of the champion's live predictions."""

    day: dt.date
    predictions: int  # rows the champion scored that day
    labelled: int  # of them, with a label joined (0 before the labels are due or when none arrived)
    realized: dict[str, float] | None  # roc_auc and accuracy; None without labels
    estimated: dict[str, float] | None  # the same, estimated from the scores alone; None without a baseline
    prediction_shift: float | None  # KS D of the day's scores against the validation scores
    prediction_shift_p_value: float | None
    concept_drift: bool | None  # the estimate and the labels disagree beyond their sampling error; None: not judged

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the day as text, and a figure that is undefined (NaN: one class only) as null."""
        return _finite({**asdict(self), "day": self.day.isoformat()})


@dataclass(frozen=True)
class DecayVerdict:
    """Whether the labelled window shows a decayed champion, and the figures behind it."""

    decayed: bool
    reasons: tuple[str, ...]
    metric: str
    labelled_rows: int
    realized: float | None = None
    realized_upper: float | None = None  # the bootstrap's upper bound of the window's metric
    baseline: float | None = None
    drop_lower: float | None = None  # the bootstrap's lower bound of baseline - window
    drop_upper: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return _finite({**asdict(self), "reasons": list(self.reasons)})


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (XCom and MLflow take JSON)."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def baseline_from_frame(frame: pd.DataFrame, *, positive_class: int, segments: Sequence[str] = ()) -> Baseline:
    """The validation scores artifact (``label``, ``probability_<class>``, segment columns) as a :class:`Baseline`."""
    import numpy as np

    column = f"probability_{positive_class}"
    missing = [c for c in (LABEL, column) if c not in frame.columns]
    if missing:
        raise PerformanceInputError(f"the validation scores lack the columns {missing}")
    if frame.empty:
        raise PerformanceInputError("the validation scores hold no rows")
    labels = (frame[LABEL].to_numpy() == positive_class).astype(np.int64)
    scores = frame[column].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        raise PerformanceInputError(f"the validation scores' {column} holds values that are not finite numbers")
    return Baseline(labels=labels, scores=scores, segments={s: frame[s].to_numpy() for s in segments if s in frame.columns})


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame, *, key: str, target: str, positive_class: int, day: dt.date) -> pd.DataFrame:
    """The day's predictions that have a label: the prediction's columns, ``score`` and ``label`` (1 for the positive class).

    :raises PerformanceInputError: a key missing from either side, a key labelled twice, or a label
        that is not one of the classes.
    """
    import numpy as np

    for side, frame, needed in (("predictions", predictions, key), ("labels", labels, key), ("labels", labels, target)):
        if needed not in frame.columns:
            raise PerformanceInputError(f"{day}: the {side} have no column {needed!r}")
    labels = labels[[key, target]].dropna()
    twice = labels[key].duplicated(keep=False)
    if twice.any():
        example = labels.loc[twice, key].iloc[0]
        raise PerformanceInputError(f"{day}: {int(twice.sum())} label rows share a key with another (for example {example!r}); one label per key")
    score_column = f"probability_{positive_class}"
    if score_column not in predictions.columns:
        raise PerformanceInputError(f"{day}: the predictions have no column {score_column!r}")
    joined = predictions.merge(labels, on=key, how="inner", validate="many_to_one")
    values = joined[target].to_numpy()
    return joined.assign(**{POSITIVE_SCORE: joined[score_column].to_numpy(dtype=np.float64), LABEL: (values == positive_class).astype(np.int64)})


def _two_class(scores: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.column_stack([1.0 - scores, scores])


def metric_value(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """One metric (``stats.classification``'s) of binary labels and positive-class scores; NaN where undefined."""
    from mlops_airflow.stats.classification import score

    return score(metric, labels, _two_class(scores))


def _bootstrap(metric: str, labels: np.ndarray, scores: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    import numpy as np

    from mlops_airflow.stats.classification import METRICS
    from mlops_airflow.stats.gating import resample_weights

    proba = _two_class(scores)
    return np.concatenate([METRICS[metric].compute(labels, proba, weights) for weights in resample_weights(len(labels), resamples, seed)])


def judge_decay(labels: np.ndarray, scores: np.ndarray, baseline: Baseline | None, spec: PerformanceSpec, *, seed: int = 0) -> DecayVerdict:
    """Whether the window's labelled predictions show decay (module docstring), never on fewer than ``min_labelled_rows``."""
    import numpy as np

    rows, metric = len(labels), spec.metric
    if rows < spec.min_labelled_rows:
        return DecayVerdict(False, (f"{rows} labelled predictions in the window; a verdict needs {spec.min_labelled_rows}",), metric, rows)
    realized = metric_value(metric, labels, scores)
    if not math.isfinite(realized):
        return DecayVerdict(False, (f"{metric} is undefined on the window's labels (one class only)",), metric, rows)
    window = _bootstrap(metric, labels, scores, spec.bootstrap_resamples, seed)
    undefined = int((~np.isfinite(window)).sum())
    if undefined:
        return DecayVerdict(False, (f"{metric} is undefined on {undefined} of {len(window)} resamples of the window: too few of one class",), metric, rows)
    tail = 1.0 - spec.confidence
    realized_upper = float(np.quantile(window, spec.confidence))
    reasons, decayed = [], False
    if spec.floor is not None:
        if realized_upper < spec.floor:
            decayed = True
            reasons.append(f"{metric} {realized:.4f} is below the floor {spec.floor} (upper bound {realized_upper:.4f} at {spec.confidence:.0%})")
        else:
            reasons.append(f"{metric} {realized:.4f} is not below the floor {spec.floor} at {spec.confidence:.0%} (upper bound {realized_upper:.4f})")
    verdict = {"realized": realized, "realized_upper": realized_upper}
    if spec.max_drop is not None:
        if baseline is None:
            reasons.append("no promotion-time baseline (the champion's run has no validation scores): judged on the floor only")
        else:
            base = metric_value(metric, baseline.labels, baseline.scores)
            reference = _bootstrap(metric, baseline.labels, baseline.scores, spec.bootstrap_resamples, seed + 1)
            drops = reference - window
            drops = drops[np.isfinite(drops)]
            if not math.isfinite(base) or drops.size < len(window) // 2:
                reasons.append(f"{metric} is undefined on the champion's validation scores: judged on the floor only")
                return DecayVerdict(decayed, tuple(reasons), metric, rows, **verdict)
            lower, upper = float(np.quantile(drops, tail)), float(np.quantile(drops, spec.confidence))
            verdict.update(baseline=base, drop_lower=lower, drop_upper=upper)
            if lower > spec.max_drop:
                decayed = True
                reasons.append(
                    f"{metric} dropped {base - realized:.4f} from the baseline {base:.4f}; at {spec.confidence:.0%} by at least {lower:.4f} > {spec.max_drop}"
                )
            else:
                reasons.append(
                    f"{metric} moved {realized - base:+.4f} from the baseline {base:.4f}; the drop's lower bound {lower:.4f} is within {spec.max_drop}"
                )
    return DecayVerdict(decayed, tuple(reasons), metric, rows, **verdict)


def day_performance(day: dt.date, scored: np.ndarray, labelled: pd.DataFrame | None, *, baseline: Baseline | None, calibration: Any | None) -> DayPerformance:
    """One day's figures: ``scored`` are all its positive-class scores, ``labelled`` its rows with labels (or None)."""
    from scipy.stats import ks_2samp

    from mlops_airflow.stats.performance_estimation import EstimationInputError, concept_drift, estimate_performance, realized_performance

    realized = estimated = shift = shift_p = concept = None
    if len(scored) and calibration is not None:
        guess = estimate_performance(calibration, scored)
        estimated = {"roc_auc": guess.roc_auc, "accuracy": guess.accuracy}
    if len(scored) and baseline is not None:
        test = ks_2samp(baseline.scores, scored)
        shift, shift_p = float(test.statistic), float(test.pvalue)
    if labelled is not None and len(labelled):
        labels, scores = labelled[LABEL].to_numpy(), labelled[POSITIVE_SCORE].to_numpy()
        actual = realized_performance(scores, labels)
        realized = {"roc_auc": actual.roc_auc, "accuracy": actual.accuracy}
        if calibration is not None:
            try:
                concept = concept_drift(calibration, scores, labels).drifted
            except EstimationInputError:
                concept = None  # one class only that day: not judged
    return DayPerformance(
        day=day,
        predictions=len(scored),
        labelled=0 if labelled is None else len(labelled),
        realized=realized,
        estimated=estimated,
        prediction_shift=shift,
        prediction_shift_p_value=shift_p,
        concept_drift=concept,
    )


def segment_metrics(frame: pd.DataFrame, segments: Sequence[str], metric: str, min_rows: int) -> dict[str, dict[str, float]]:
    """The window's metric per value of each segment column present, for values with at least ``min_rows`` labelled rows."""
    result: dict[str, dict[str, float]] = {}
    for column in segments:
        if column not in frame.columns:
            continue
        values = {}
        for value, rows in frame.groupby(column, observed=True):
            if len(rows) >= min_rows:
                figure = metric_value(metric, rows[LABEL].to_numpy(), rows[POSITIVE_SCORE].to_numpy())
                if math.isfinite(figure):
                    values[str(value)] = figure
        result[column] = values
    return result
