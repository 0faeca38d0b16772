"""The champion judged on live outcomes: predictions joined with labels that arrived late.

Where it sits in the loop: ``performance_monitor_<model>`` reads each day's batch predictions
(``batch_score_<model>``'s output) and live answers (the inference log), the labels partition of that day once it is due, and the
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class DayPerformance:
    """One day of the champion's live predictions."""

    day: dt.date
    predictions: int  # rows the champion scored that day (batch and live)
    labelled: int  # of them, with a label joined (0 before the labels are due or when none arrived)
    realized: dict[str, float] | None  # roc_auc and accuracy; None without labels
    estimated: dict[str, float] | None  # the same, estimated from the scores alone; None without a baseline
    prediction_shift: float | None  # KS D of the day's scores against the validation scores
    prediction_shift_p_value: float | None
    concept_drift: bool | None  # the estimate and the labels disagree beyond their sampling error; None: not judged
    live_predictions: int = 0  # of the predictions, the answers through the live URL (the inference log)

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


def baseline_from_frame(frame: pd.DataFrame, *, classes: Sequence[int]) -> Baseline:
    """The validation scores artifact (``label``, ``probability_<class>``) as a :class:`Baseline` (the last class is the positive one)."""
    import numpy as np

    column = f"probability_{classes[-1]}"
    missing = [c for c in (LABEL, column) if c not in frame.columns]
    if missing:
        raise PerformanceInputError(f"the validation scores lack the columns {missing}")
    if frame.empty:
        raise PerformanceInputError("the validation scores hold no rows")
    _check_classes(frame[LABEL].to_numpy(), classes, "the validation scores' labels")
    scores = finite_scores(frame[column], f"the validation scores' {column}")
    return Baseline(labels=(frame[LABEL].to_numpy() == classes[-1]).astype(np.int64), scores=scores)


def _check_classes(values: np.ndarray, classes: Sequence[int], what: str) -> None:
    import numpy as np

    try:
        unknown = ~np.isin(values, np.asarray(classes))
    except TypeError:  # labels of a type numpy cannot compare with the classes
        unknown = np.ones(len(values), dtype=bool)
    if unknown.any():
        raise PerformanceInputError(f"{what}: {int(unknown.sum())} values are not one of the classes {list(classes)} (for example {values[unknown][0]!r})")


def finite_scores(values: pd.Series, what: str) -> np.ndarray:
    """``values`` as floats; :class:`PerformanceInputError` naming ``what`` when any is not a finite number."""
    import numpy as np

    try:
        scores = values.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PerformanceInputError(f"{what} are not numbers: {err}") from None
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise PerformanceInputError(f"{what}: {bad} of {scores.size} are not finite numbers")
    return scores


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame, *, key: str, target: str, classes: Sequence[int], day: dt.date) -> pd.DataFrame:
    """The day's predictions that have a label: the prediction's columns, ``score`` and ``label`` (1 for the positive class, the last one).

    A label row delivered twice counts once; a missing label is no label.

    :raises PerformanceInputError: a key missing from either side, keys of different types, a key
        given two different labels, a label that is not one of the classes, a score that is not a
        finite number.
    """
    import numpy as np
    import pandas as pd

    for side, frame, needed in (("predictions", predictions, key), ("labels", labels, key), ("labels", labels, target)):
        if needed not in frame.columns:
            raise PerformanceInputError(f"{day}: the {side} have no column {needed!r}")
    score_column = f"probability_{classes[-1]}"
    if score_column not in predictions.columns:
        raise PerformanceInputError(f"{day}: the predictions have no column {score_column!r}")
    labels = labels[[key, target]].dropna().drop_duplicates()
    twice = labels[key].duplicated(keep=False)
    if twice.any():
        example = labels.loc[twice, key].iloc[0]
        raise PerformanceInputError(f"{day}: {int(twice.sum())} label rows give one key different labels (for example {example!r}); one label per key")
    _check_classes(labels[target].to_numpy(), classes, f"{day}: the labels' {target}")
    if pd.api.types.is_numeric_dtype(predictions[key]) != pd.api.types.is_numeric_dtype(labels[key]):
        raise PerformanceInputError(f"{day}: the key {key!r} is {predictions[key].dtype} in the predictions but {labels[key].dtype} in the labels")
    joined = predictions.merge(labels, on=key, how="inner", validate="many_to_one")
    scores = finite_scores(joined[score_column], f"{day}: the predictions' {score_column}")
    return joined.assign(**{POSITIVE_SCORE: scores, LABEL: (joined[target].to_numpy() == classes[-1]).astype(np.int64)})


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
    # Two tests, either of which is decay: each at half the error rate (Bonferroni), so a healthy
    # champion is called decayed at most 1 - confidence of the time.
    tests = (spec.floor is not None) + (spec.max_drop is not None and baseline is not None)
    tail = (1.0 - spec.confidence) / max(tests, 1)
    level = 1.0 - tail
    realized_upper = float(np.quantile(window, level))
    reasons, decayed = [], False
    if spec.floor is not None:
        if realized_upper < spec.floor:
            decayed = True
            reasons.append(f"{metric} {realized:.4f} is below the floor {spec.floor} (upper bound {realized_upper:.4f} at {level:.1%})")
        else:
            reasons.append(f"{metric} {realized:.4f} is not below the floor {spec.floor} at {level:.1%} (upper bound {realized_upper:.4f})")
    verdict = {"realized": realized, "realized_upper": realized_upper}
    if spec.max_drop is not None:
        if baseline is None:
            reasons.append(f"no promotion-time baseline (the champion's run has no validation scores): {_floor_only(spec)}")
        else:
            base = metric_value(metric, baseline.labels, baseline.scores)
            reference = _bootstrap(metric, baseline.labels, baseline.scores, spec.bootstrap_resamples, seed + 1)
            drops = reference - window
            drops = drops[np.isfinite(drops)]
            if not math.isfinite(base) or drops.size < len(window) // 2:
                reasons.append(f"{metric} is undefined on the champion's validation scores: {_floor_only(spec)}")
                return DecayVerdict(decayed, tuple(reasons), metric, rows, **verdict)
            lower, upper = float(np.quantile(drops, tail)), float(np.quantile(drops, level))
            verdict.update(baseline=base, drop_lower=lower, drop_upper=upper)
            if lower > spec.max_drop:
                decayed = True
                reasons.append(f"{metric} dropped {base - realized:.4f} from the baseline {base:.4f}; at {level:.1%} by at least {lower:.4f} > {spec.max_drop}")
            else:
                reasons.append(
                    f"{metric} moved {realized - base:+.4f} from the baseline {base:.4f}; the drop's lower bound {lower:.4f} is within {spec.max_drop}"
                )
    return DecayVerdict(decayed, tuple(reasons), metric, rows, **verdict)


def _floor_only(spec: PerformanceSpec) -> str:
    return "judged on the floor only" if spec.floor is not None else "no verdict possible (no floor either)"


def day_performance(
    day: dt.date, scored: np.ndarray, labelled: pd.DataFrame | None, *, baseline: Baseline | None, calibration: Any | None, live: int = 0
) -> DayPerformance:
    """One day's figures: ``scored`` are all its positive-class scores (``live`` of them from the inference log), ``labelled`` its rows with labels (or None)."""
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
        live_predictions=live,
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
