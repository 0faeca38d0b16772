"""Score challenger and champion on the same evaluation window and judge the gates.

Where it sits in the loop: train -> **evaluate** -> (approve) -> promote. Airflow-free:
the operator loads the models and hands them over; everything that can make an
evaluation impossible raises :class:`~mlops_airflow.stats.gating.EvaluationError`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_airflow.constants import Recommendation
from mlops_airflow.core.features import FeatureError, prepare_features
from mlops_airflow.core.payloads import EvaluationReport, ScoredVersion
from mlops_airflow.specs import ModelSpec
from mlops_airflow.stats.classification import METRICS
from mlops_airflow.stats.gating import EvaluationError, GatePolicy, SegmentComparison, judge, paired_bootstrap, require_finite

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class EvaluationRows:
    """The labelled rows of the evaluation window: model inputs, class indices, raw columns."""

    frame: pd.DataFrame
    y: np.ndarray
    start: dt.date
    end: dt.date


@dataclass(frozen=True)
class Candidate:
    """One model version to score, already loaded (``model.predict`` returns class probabilities)."""

    role: str
    version: str
    run_id: str
    model: Any

    @property
    def label(self) -> str:
        return f"{self.role} v{self.version}"


def policy_of(spec: ModelSpec) -> GatePolicy:
    promotion = spec.promotion
    return GatePolicy(
        primary_metric=promotion.primary_metric,
        minimums=promotion.minimums,
        maximums=promotion.maximums,
        comparison=promotion.comparison,
        margin=promotion.margin,
        max_segment_regression=promotion.max_segment_regression,
    )


def evaluation_window(spec: ModelSpec, window_end: dt.date) -> tuple[dt.date, dt.date]:
    """The newest ``promotion.evaluation_days`` of the training window: held out from fitting."""
    return window_end - dt.timedelta(days=spec.promotion.evaluation_days), window_end


def fit_window(params: dict[str, str]) -> tuple[dt.date, dt.date] | None:
    """The days a training run fit on (``[window_start, validation_start)``), from its params."""
    try:
        return dt.date.fromisoformat(params["window_start"]), dt.date.fromisoformat(params["validation_start"])
    except (KeyError, ValueError):
        return None


def check_no_leakage(label: str, fit: tuple[dt.date, dt.date] | None, start: dt.date, end: dt.date) -> None:
    """Scoring a model on days it was fit on flatters it: refuse."""
    if fit is not None and fit[0] < end and start < fit[1]:
        raise EvaluationError(
            f"the evaluation window {start}..{end} overlaps the days {label} was fit on ({fit[0]}..{fit[1]}); evaluate on newer data (a later window_end)"
        )


def load_rows(spec: ModelSpec, start: dt.date, end: dt.date) -> EvaluationRows:
    """Read ``[start, end)``; drop unlabelled rows; map the label to class indices."""
    import numpy as np

    from mlops_airflow.core.partitions import read_window

    window = read_window(spec.data.uri, start, end)
    frame = window.frame
    if frame.empty:
        raise EvaluationError(f"no rows under {spec.data.uri} for the evaluation window {start}..{end}")
    if spec.target.column not in frame.columns:
        raise EvaluationError(f"the evaluation data has no label column {spec.target.column!r}")
    frame = frame[frame[spec.target.column].notna()].reset_index(drop=True)
    if frame.empty:
        raise EvaluationError(f"no labelled rows in the evaluation window {start}..{end}")
    classes = sorted(spec.target.classes)
    labels = frame[spec.target.column].astype("int64")
    unknown = sorted(set(labels.unique()) - set(classes))
    if unknown:
        raise EvaluationError(f"label {spec.target.column!r} has values {unknown[:5]} outside the classes {classes}")
    try:
        features = prepare_features(frame, spec)
    except FeatureError as err:
        raise EvaluationError(f"evaluation data: {err}") from err
    # Columns a model may ask for beyond the spec's features (an older champion's) pass through as read.
    extra = frame[[c for c in frame.columns if c not in features.columns]]
    inputs = features.join(extra)
    y = np.searchsorted(np.asarray(classes), labels.to_numpy())
    return EvaluationRows(frame=inputs, y=y, start=start, end=end)


def predict_proba(candidate: Candidate, rows: EvaluationRows, n_classes: int) -> np.ndarray:
    """Class probabilities from a model, checked: every input it declares present, one finite column per class."""
    import numpy as np

    schema = candidate.model.metadata.get_input_schema() if candidate.model.metadata is not None else None
    names = schema.input_names() if schema is not None and schema.has_input_names() else list(rows.frame.columns)
    missing = [n for n in names if n not in rows.frame.columns]
    if missing:
        raise EvaluationError(f"{candidate.label}'s signature expects columns {missing} that the evaluation data does not have")
    try:
        output = candidate.model.predict(rows.frame[names])
    except Exception as err:  # a model that cannot score the data is a failed evaluation, whatever it raised
        message = getattr(err, "message", None) or str(err)
        raise EvaluationError(f"{candidate.label} cannot score the evaluation data ({type(err).__name__}): {message[:500]}") from err
    proba = np.asarray(output.to_numpy() if hasattr(output, "to_numpy") else output, dtype="float64")
    expected = (len(rows.y), n_classes)
    if proba.shape != expected:
        raise EvaluationError(f"{candidate.label} returned an output of shape {proba.shape}; expected {expected}: one probability per class")
    bad = int((~np.isfinite(proba)).sum())
    if bad:
        raise EvaluationError(f"{candidate.label} returned {bad} NaN or infinite probabilities; its metrics would be NaN")
    return proba


def _metrics(names, y, proba, label: str) -> dict[str, float]:
    import numpy as np

    ones = np.ones((1, len(y)))
    values = {name: float(METRICS[name].compute(y, proba, ones)[0]) for name in names}
    require_finite(values, list(names), label)
    return values


def _segments(spec: ModelSpec, rows: EvaluationRows, proba: dict[str, np.ndarray]) -> list[dict]:
    """The primary metric per segment value; small or one-class segments are listed, not judged."""
    import numpy as np

    primary = METRICS[spec.promotion.primary_metric]
    out = []
    for column in spec.promotion.segments:
        values = rows.frame[column].astype("string").fillna("<missing>").to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            entry: dict[str, Any] = {"column": column, "value": str(value), "rows": int(mask.sum()), "skipped": None}
            if entry["rows"] < spec.promotion.min_segment_rows:
                entry["skipped"] = f"{entry['rows']} rows < min_segment_rows {spec.promotion.min_segment_rows}"
            for role, p in proba.items():
                score = float(primary.compute(rows.y[mask], p[mask], np.ones((1, int(mask.sum()))))[0])
                entry[role] = score
                if not math.isfinite(score) and entry["skipped"] is None:
                    entry["skipped"] = f"{primary.name} is not defined here (one class only)"
            out.append(entry)
    return out


def evaluate(spec: ModelSpec, rows: EvaluationRows, challenger: Candidate, champion: Candidate | None) -> EvaluationReport:
    """
    The evaluation report: metrics of both versions, the paired bootstrap, segments, gates, recommendation.

    It travels through XCom (:meth:`~mlops_airflow.core.payloads.EvaluationReport.to_xcom`) to the approval and promotion tasks.
    """
    promotion = spec.promotion
    n_classes = len(spec.target.classes)
    names = promotion.metrics
    proba = {"challenger": predict_proba(challenger, rows, n_classes)}
    metrics = {"challenger": _metrics(names, rows.y, proba["challenger"], challenger.label)}
    bootstrap = None
    if champion is not None:
        proba["champion"] = predict_proba(champion, rows, n_classes)
        metrics["champion"] = _metrics(names, rows.y, proba["champion"], champion.label)
        bootstrap = paired_bootstrap(
            promotion.primary_metric,
            rows.y,
            proba["challenger"],
            proba["champion"],
            resamples=promotion.bootstrap_resamples,
            confidence=promotion.confidence,
            seed=promotion.seed,
        )
    segments = _segments(spec, rows, proba)
    comparisons = [
        SegmentComparison(s["column"], s["value"], s["rows"], s["challenger"], s["champion"]) for s in segments if champion is not None and s["skipped"] is None
    ]
    gates = judge(policy_of(spec), metrics["challenger"], champion=metrics.get("champion"), bootstrap=bootstrap, segments=comparisons)
    failed = [f"{g.name}: {g.detail}" for g in gates if not g.passed]
    return EvaluationReport(
        registered_model_name=spec.registered_model_name,
        primary_metric=promotion.primary_metric,
        window_start=rows.start.isoformat(),
        window_end=rows.end.isoformat(),
        rows=len(rows.y),
        challenger=ScoredVersion(challenger.version, challenger.run_id, metrics["challenger"]),
        champion=None if champion is None else ScoredVersion(champion.version, champion.run_id, metrics["champion"]),
        bootstrap=None if bootstrap is None else bootstrap.as_dict(),
        segments=tuple(segments),
        gates=tuple(g.as_dict() for g in gates),
        recommendation=Recommendation.REJECT if failed else Recommendation.PROMOTE,
        reasons=tuple(failed or ["all gates passed"]),
    )


def summary_table(report: EvaluationReport) -> str:
    """The report as a short Markdown table, for the task log and the approval form."""
    challenger, champion = report.challenger, report.champion
    head = f"| metric | {'champion v' + champion.version if champion else 'no champion'} | challenger v{challenger.version} |"
    lines = [
        f"**{report.registered_model_name}**: evaluated on {report.rows} rows, {report.window_start}..{report.window_end}",
        "",
        head,
        "|---|---|---|",
    ]
    for name, value in challenger.metrics.items():
        before = f"{champion.metrics[name]:.4f}" if champion else "-"
        lines.append(f"| {name} | {before} | {value:.4f} |")
    lines += ["", "| gate | result | detail |", "|---|---|---|"]
    lines += [f"| {g['name']} | {'pass' if g['passed'] else 'FAIL'} | {g['detail']} |" for g in report.gates]
    lines += ["", f"Recommendation: **{report.recommendation}**"]
    return "\n".join(lines)
