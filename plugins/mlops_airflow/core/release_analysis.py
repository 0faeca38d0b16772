"""Judging a release on live traffic: a canary step, or a shadow replay, read from the inference log.

Where it sits in the loop: deploy idle colour -> smoke -> **canary steps / shadow replay** -> switch
(-> rollback). The verdicts are Argo Rollouts' AnalysisRun phases: ``Successful``, ``Failed`` (the
release is rolled back) and ``Inconclusive`` (too little traffic to judge: a person decides).
Airflow-free: the operators in :mod:`mlops_airflow.operators.release_strategies` read the log and
record what is decided here.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MIN_SHIFT_SAMPLES = 20  # scores per colour below which the output shift is not judged
# A shift fails a step only when it is both large (D above the limit) and no accident of a small
# sample: at a 10% step a few hundred scores differ from the old colour's by chance (D ~ 0.1).
SHIFT_ALPHA = 0.01


class Verdict(enum.StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


def scores(response: bytes) -> list[float]:
    """One number per predicted row of a scoring answer (``{"predictions": [...]}``).

    A row of class probabilities gives its last class's (the positive class of a binary
    classifier); a number gives itself; an answer that is not a prediction gives nothing.
    """
    try:
        predictions = json.loads(response).get("predictions")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return []
    if isinstance(predictions, dict):  # a frame's columns, MLflow's "split" of a DataFrame output
        return []
    out = []
    for row in predictions or []:
        value = row[-1] if isinstance(row, list) and row else row
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(float(value))
    return out


def predicted_classes(response: bytes) -> list[Any]:
    """Per row: the index of the largest probability, or the value itself (a label, a regression's number)."""
    try:
        predictions = json.loads(response).get("predictions")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return []
    if not isinstance(predictions, list):
        return []
    try:
        return [max(range(len(row)), key=row.__getitem__) if isinstance(row, list) and row else row for row in predictions]
    except TypeError:  # a row with nulls or mixed types: nothing comparable
        return []


@dataclass(frozen=True)
class TrafficSample:
    """One colour's answers over one period: status, latency and scores."""

    statuses: np.ndarray
    latencies_ms: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_log(cls, frame: pd.DataFrame) -> TrafficSample:
        """From inference-log rows (``status``, ``latency_ms``, ``response``)."""
        import numpy as np

        if frame.empty:
            return cls(np.array([], dtype=int), np.array([], dtype=float), np.array([], dtype=float))
        ok = frame["status"].to_numpy() == 200
        return cls(
            statuses=frame["status"].to_numpy(dtype=int),
            latencies_ms=frame["latency_ms"].to_numpy(dtype=float),
            scores=np.array([s for body in frame["response"][ok] for s in scores(body)], dtype=float),
        )

    @property
    def requests(self) -> int:
        return len(self.statuses)

    @property
    def errors(self) -> int:
        """Answers other than 200: a server error, a refusal, and a request the version turned down (a 4xx)."""
        return int((self.statuses != 200).sum())

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p95_ms(self) -> float | None:
        """The 95th percentile latency of the answered (200) requests; ``None`` without any."""
        import numpy as np

        answered = self.latencies_ms[self.statuses == 200]
        return float(np.percentile(answered, 95)) if len(answered) else None


def output_shift(baseline: np.ndarray, candidate: np.ndarray) -> tuple[float, float] | None:
    """The KS statistic D between two colours' scores and its p-value; ``None`` when either has fewer than :data:`MIN_SHIFT_SAMPLES`."""
    if len(baseline) < MIN_SHIFT_SAMPLES or len(candidate) < MIN_SHIFT_SAMPLES:
        return None
    from mlops_airflow.stats.ks import ks_2samp_columns

    result = ks_2samp_columns(baseline.reshape(-1, 1), candidate.reshape(-1, 1), fast_tail=False)
    return float(result.statistic[0]), float(result.pvalue[0])


@dataclass(frozen=True)
class CanaryCriteria:
    max_error_rate: float
    max_p95_ms: float
    max_output_shift: float
    min_requests: int


@dataclass(frozen=True)
class StepAnalysis:
    """One canary step: what the new colour did with its share, against the old colour over the same period."""

    step: int
    weight: int  # percent of live traffic on the new colour
    started: str
    ended: str
    requests: int  # answers of the new colour
    errors: int
    error_rate: float | None
    p95_ms: float | None
    output_shift: float | None  # KS D of the new colour's scores against the old colour's
    output_shift_p_value: float | None
    baseline_requests: int
    verdict: Verdict
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": str(self.verdict), "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepAnalysis:
        return cls(**{**data, "verdict": Verdict(data["verdict"]), "reasons": tuple(data["reasons"])})


def analyse_canary_step(
    baseline: TrafficSample, candidate: TrafficSample, criteria: CanaryCriteria, *, step: int, weight: int, started: dt.datetime, ended: dt.datetime
) -> StepAnalysis:
    """Failed when any limit is passed; else Inconclusive below ``min_requests`` answers of the new colour; else Successful.

    Errors are answers other than 200 (a 4xx counts: the old colour answered the same traffic). The new
    colour may err ``max_error_rate`` more often than the old one over the same period; errors beyond
    what that allows at ``min_requests`` fail the step even before it has that many answers. A shift
    counts when it is also significant at :data:`SHIFT_ALPHA`.
    """
    requests, errors = candidate.requests, candidate.errors
    error_rate = errors / requests if requests else None
    allowed = baseline.error_rate + criteria.max_error_rate
    p95 = candidate.p95_ms()
    shift = output_shift(baseline.scores, candidate.scores)
    enough = requests >= criteria.min_requests
    failed = []
    # More errors than the limit allows at min_requests: no later answer can bring the rate under it.
    if errors and (errors > allowed * max(requests, criteria.min_requests) or (enough and error_rate > allowed)):
        failed.append(
            f"error rate {errors}/{requests} = {error_rate:.3f} above {allowed:.3g} (the old colour's {baseline.error_rate:.3g} + {criteria.max_error_rate:g})"
        )
    if enough and p95 is not None and p95 > criteria.max_p95_ms:
        failed.append(f"p95 latency {p95:.1f} ms above {criteria.max_p95_ms:g} ms")
    if shift is not None and shift[0] > criteria.max_output_shift and shift[1] < SHIFT_ALPHA:
        failed.append(f"predictions shifted from the old colour's: KS D {shift[0]:.3f} above {criteria.max_output_shift:g} (p = {shift[1]:.2g})")
    if failed:
        verdict, reasons = Verdict.FAILED, failed
    elif not enough:
        verdict, reasons = Verdict.INCONCLUSIVE, [f"{requests} answers from the new colour, fewer than the {criteria.min_requests} needed to judge"]
    else:
        verdict, reasons = Verdict.SUCCESSFUL, []
    return StepAnalysis(
        step=step,
        weight=weight,
        started=started.isoformat(),
        ended=ended.isoformat(),
        requests=requests,
        errors=errors,
        error_rate=error_rate,
        p95_ms=p95,
        output_shift=shift[0] if shift else None,
        output_shift_p_value=shift[1] if shift else None,
        baseline_requests=baseline.requests,
        verdict=verdict,
        reasons=tuple(reasons),
    )


@dataclass(frozen=True)
class ShadowCriteria:
    min_requests: int
    min_agreement: float
    max_error_rate: float
    max_p95_ms: float


@dataclass(frozen=True)
class ShadowReport:
    """The new colour's answers to the live colour's logged requests."""

    logged: int  # requests selected from the log
    replayed: int  # sent to the new colour
    answered: int  # 200 answers
    errors: int  # any other answer, or none
    rows_compared: int
    agreement: float | None  # share of rows with the live colour's predicted class (or value)
    p95_ms: float | None
    output_shift: float | None  # information only: the agreement is what is judged
    verdict: Verdict
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": str(self.verdict), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Replayed:
    """One logged request and the new colour's answer to it."""

    live_response: bytes
    status: int  # 0: no answer
    response: bytes
    latency_ms: float


def agreeing_rows(live: bytes, shadow: bytes, tolerance: float) -> tuple[int, int]:
    """(rows whose prediction agrees, rows compared) between two answers to the same request."""
    a, b = predicted_classes(live), predicted_classes(shadow)
    if len(a) != len(b):
        return 0, max(len(a), len(b))
    same = 0
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) or isinstance(y, float):
            same += isinstance(x, int | float) and isinstance(y, int | float) and abs(x - y) <= tolerance
        else:
            same += x == y
    return same, len(a)


def judge_shadow(logged: int, replays: Sequence[Replayed], criteria: ShadowCriteria, *, tolerance: float) -> ShadowReport:
    """Failed when the new colour errs, is slow or disagrees beyond the limits; Inconclusive below ``min_requests``."""
    answered = [r for r in replays if r.status == 200]
    errors = len(replays) - len(answered)  # the live colour answered 200 to every one of these requests
    same = compared = 0
    for replay in answered:
        agree, rows = agreeing_rows(replay.live_response, replay.response, tolerance)
        same += agree
        compared += rows
    agreement = same / compared if compared else None
    import numpy as np

    latencies = np.array([r.latency_ms for r in answered], dtype=float)
    p95 = float(np.percentile(latencies, 95)) if len(latencies) else None
    shift = output_shift(_all_scores(r.live_response for r in answered), _all_scores(r.response for r in answered))
    error_rate = errors / len(replays) if replays else 0.0
    failed = []
    if error_rate > criteria.max_error_rate:
        failed.append(f"{errors} of {len(replays)} replayed requests failed ({error_rate:.3f} above {criteria.max_error_rate:g})")
    if p95 is not None and p95 > criteria.max_p95_ms:
        failed.append(f"p95 latency {p95:.1f} ms above {criteria.max_p95_ms:g} ms")
    if agreement is not None and len(replays) >= criteria.min_requests and agreement < criteria.min_agreement:
        failed.append(f"agrees with the live colour on {agreement:.3f} of rows, below {criteria.min_agreement:g}")
    if failed:
        verdict, reasons = Verdict.FAILED, failed
    elif len(answered) < criteria.min_requests:
        verdict, reasons = Verdict.INCONCLUSIVE, [f"{len(answered)} replayed requests answered, fewer than the {criteria.min_requests} needed to judge"]
    else:
        verdict, reasons = Verdict.SUCCESSFUL, []
    return ShadowReport(
        logged=logged,
        replayed=len(replays),
        answered=len(answered),
        errors=errors,
        rows_compared=compared,
        agreement=agreement,
        p95_ms=p95,
        output_shift=shift[0] if shift else None,
        verdict=verdict,
        reasons=tuple(reasons),
    )


def _all_scores(responses: Iterable[bytes]) -> np.ndarray:
    import numpy as np

    return np.array([s for body in responses for s in scores(body)], dtype=float)
