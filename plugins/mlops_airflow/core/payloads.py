"""What tasks hand each other through XCom and DAG-run conf: frozen dataclasses with ``to_xcom`` / ``from_xcom``.

Where it sits in the loop: train -> :class:`TrainingResult` -> evaluate -> :class:`EvaluationReport`
-> approve / promote -> deploy -> :class:`Release` -> smoke, switch, verify, rollback; the drift
sensor -> :class:`DriftSummary` -> the retrain gate, the retrain run's ``drift`` Param, the backfill.

On the wire each payload is plain JSON with two keys of its own: ``payload`` (its kind) and
``payload_version``. ``from_xcom`` refuses anything else with a :class:`PayloadError` that names
the payload and the problem, so a value rewritten through the API, or written by another
release of this package, fails the task that reads it instead of being half-understood.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from mlops_airflow.constants import APPROVE_OPTION, Recommendation

KIND_KEY = "payload"
VERSION_KEY = "payload_version"

_P = TypeVar("_P", bound="_Payload")


class PayloadError(ValueError):
    """A value read from XCom or conf is not the payload the task expects; the message says why."""


class _Payload:
    """``to_xcom``/``from_xcom`` for a frozen dataclass whose fields are JSON values."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_xcom(self) -> dict[str, Any]:
        """JSON-ready: what the task returns, or what a DAG run's conf carries."""
        return {KIND_KEY: self.KIND, VERSION_KEY: self.VERSION, **_json_ready(self._fields())}

    @classmethod
    def _read(cls, value: Any, *, legacy: bool = False) -> dict[str, Any]:
        """The fields of ``value``, checked: a mapping of this kind and version with every required field."""
        if not isinstance(value, Mapping):
            raise PayloadError(f"{cls.KIND}: expected a JSON object, got {type(value).__name__}")
        kind, version = value.get(KIND_KEY), value.get(VERSION_KEY)
        if not (legacy and kind is None and version is None):
            if kind != cls.KIND:
                raise PayloadError(f"{cls.KIND}: the value is a {kind!r} payload" if kind else f"{cls.KIND}: the value has no {KIND_KEY!r} key")
            if version != cls.VERSION:
                raise PayloadError(f"{cls.KIND}: {VERSION_KEY} {version!r} is not one this release reads ({cls.VERSION})")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        required = [name for name, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in value]
        if missing:
            raise PayloadError(f"{cls.KIND}: missing {', '.join(map(repr, missing))}")
        return {name: value[name] for name in fields if name in value}

    @classmethod
    def from_json(cls: type[_P], text: str) -> _P:
        try:
            value = json.loads(text)
        except ValueError as err:
            raise PayloadError(f"{cls.KIND}: not JSON: {err}") from None
        return cls.from_xcom(value)  # type: ignore[attr-defined]

    def to_json(self) -> str:
        return json.dumps(self.to_xcom(), sort_keys=True)


def _json_ready(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_ready({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _day(kind: str, name: str, value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise PayloadError(f"{kind}: {name} {str(value)[:40]!r} is not a day (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class TrainingResult(_Payload):
    """What training hands downstream: the MLflow run and the registered version it made."""

    KIND: ClassVar[str] = "training_result"

    run_id: str
    model_uri: str
    version: str
    registered_model_name: str
    window_start: str
    window_end: str
    metrics: dict[str, float]
    reused: bool = False

    @classmethod
    def from_xcom(cls, value: Any) -> TrainingResult:
        return cls(**cls._read(value))


@dataclass(frozen=True)
class ScoredVersion:
    """One registered version as the evaluation saw it."""

    version: str
    run_id: str
    metrics: dict[str, float]

    @classmethod
    def from_json(cls, kind: str, value: Any) -> ScoredVersion | None:
        if value is None:
            return None
        if not isinstance(value, Mapping) or not {"version", "run_id", "metrics"} <= set(value):
            raise PayloadError(f"{kind}: a scored version needs version, run_id and metrics, got {str(value)[:80]}")
        return cls(str(value["version"]), str(value["run_id"]), dict(value["metrics"]))


@dataclass(frozen=True)
class EvaluationReport(_Payload):
    """The evidence for a promotion: both versions scored on one window, the bootstrap, segments, gates.

    ``recommendation`` is what the gates propose; the promotion task's :class:`~mlops_airflow.constants.Decision`
    is what happened (an approval or a force can change it).
    """

    KIND: ClassVar[str] = "evaluation_report"

    registered_model_name: str
    primary_metric: str
    window_start: str
    window_end: str
    rows: int
    challenger: ScoredVersion
    champion: ScoredVersion | None
    bootstrap: dict[str, Any] | None
    segments: tuple[dict[str, Any], ...]
    gates: tuple[dict[str, Any], ...]
    recommendation: Recommendation
    reasons: tuple[str, ...]
    already_champion: bool = False

    @property
    def promotes(self) -> bool:
        return self.recommendation == Recommendation.PROMOTE

    def with_already_champion(self) -> EvaluationReport:
        return dataclasses.replace(self, already_champion=True)

    @classmethod
    def from_xcom(cls, value: Any) -> EvaluationReport:
        fields = cls._read(value)
        try:
            recommendation = Recommendation(fields["recommendation"])
        except ValueError:
            raise PayloadError(f"{cls.KIND}: recommendation {fields['recommendation']!r} is not one of {[r.value for r in Recommendation]}") from None
        challenger = ScoredVersion.from_json(cls.KIND, fields["challenger"])
        if challenger is None:
            raise PayloadError(f"{cls.KIND}: no challenger")
        return cls(
            **{
                **fields,
                "rows": int(fields["rows"]),
                "challenger": challenger,
                "champion": ScoredVersion.from_json(cls.KIND, fields["champion"]),
                "segments": tuple(fields["segments"]),
                "gates": tuple(fields["gates"]),
                "recommendation": recommendation,
                "reasons": tuple(fields["reasons"]),
            }
        )


@dataclass(frozen=True)
class Approval(_Payload):
    """
    A person's answer to the approval task, as Airflow's human-in-the-loop record holds it.

    ``required=False``: nobody had to be asked. ``answered``: a person chose an option (a
    default applied at the timeout is not an answer). Built by :meth:`from_hitl` from the
    record itself, never from a task's XCom: an XCom can be written through the API and a
    task can be marked success without anyone answering. ``to_xcom`` is for the record only.
    """

    KIND: ClassVar[str] = "approval"

    required: bool
    approved: bool | None = None
    by: str | None = None
    at: str | None = None
    timed_out: bool = False
    answered: bool = False
    option: str | None = None
    by_id: str | None = None
    subject: str | None = None

    @classmethod
    def not_required(cls) -> Approval:
        return cls(required=False)

    @classmethod
    def from_hitl(cls, detail: Mapping[str, Any] | None) -> Approval:
        """
        From ``GET .../taskInstances/{task_id}/-1/hitlDetails`` (``None``: no record).

        Only an answer a person gave counts: ``response_received`` with a responding user.
        The timeout's default (no user) is a timeout; no record or no response is no answer.
        """
        if not detail or not detail.get("response_received"):
            return cls(required=True, subject=detail.get("subject") if detail else None)
        user = detail.get("responded_by_user") or {}
        options = detail.get("chosen_options") or []
        at = detail.get("responded_at")
        if not (user.get("name") or user.get("id")):
            return cls(required=True, approved=False, at=at, timed_out=True, option=", ".join(options) or None, subject=detail.get("subject"))
        return cls(
            required=True,
            approved=options == [APPROVE_OPTION],
            by=user.get("name") or user.get("id"),
            by_id=user.get("id"),
            at=at,
            answered=True,
            option=", ".join(options) or None,
            subject=detail.get("subject"),
        )

    def given_by(self, user: str | None) -> bool:
        """Whether ``user`` (a user name or id) gave this answer."""
        return bool(user) and user in {self.by, self.by_id}

    @classmethod
    def from_xcom(cls, value: Any) -> Approval:
        return cls(**cls._read(value))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test against the champion's reference sample."""

    test: str
    statistic: float | None
    effect: float | None
    pvalue: float | None
    qvalue: float | None
    verdict: str


@dataclass(frozen=True)
class DriftSummary(_Payload):
    """What the drift sensor found: the window, when the drift began, which features, and the retrain it asks for.

    The days to re-score after the retrain are :attr:`backfill_days`: from the onset to the
    window's last day. A summary written before payloads were versioned (with
    ``backfill_start``/``backfill_end`` keys and no ``payload`` key) still reads, so drift
    Params of runs queued before an upgrade keep working.
    """

    KIND: ClassVar[str] = "drift_summary"

    model: str
    champion_version: str
    window_start: dt.date
    window_end: dt.date  # exclusive
    onset: dt.date
    rows: int
    drifted_features: tuple[str, ...]
    retrain_run_id: str
    features: dict[str, FeatureDrift] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    backfill_end: dt.date | None = None  # only a pre-versioned summary sets its own

    @property
    def backfill_days(self) -> tuple[dt.date, dt.date]:
        """First and last day to re-score (both inclusive)."""
        return self.onset, self.backfill_end or self.window_end - dt.timedelta(days=1)

    def to_xcom(self) -> dict[str, Any]:
        value = super().to_xcom()
        value.pop("backfill_end")
        return value

    @classmethod
    def from_xcom(cls, value: Any) -> DriftSummary:
        legacy = isinstance(value, Mapping) and KIND_KEY not in value and "backfill_start" in value
        if legacy:
            value = {"onset": value["backfill_start"], **{k: v for k, v in value.items() if k not in {"onset", "backfill_start"}}}
        fields = cls._read(value, legacy=legacy)
        features = fields.get("features") or {}
        if not isinstance(features, Mapping):
            raise PayloadError(f"{cls.KIND}: features must be an object, got {type(features).__name__}")
        try:
            parsed_features = {str(name): FeatureDrift(**dict(entry)) for name, entry in features.items()}
        except TypeError as err:
            raise PayloadError(f"{cls.KIND}: a feature's entry is malformed: {err}") from None
        days = {name: _day(cls.KIND, name, fields[name]) for name in ("window_start", "window_end", "onset")}
        backfill_end = _day(cls.KIND, "backfill_end", fields["backfill_end"]) if fields.get("backfill_end") is not None else None
        return cls(
            **{
                **fields,
                **days,
                "champion_version": str(fields["champion_version"]),
                "rows": int(fields["rows"]),
                "drifted_features": tuple(fields["drifted_features"]),
                "features": parsed_features,
                "thresholds": dict(fields.get("thresholds") or {}),
                "backfill_end": backfill_end,
            }
        )


@dataclass(frozen=True)
class Release(_Payload):
    """What deploying the champion to the idle colour did; the smoke test, switch, verify and rollback read it."""

    KIND: ClassVar[str] = "release"

    action: str  # DEPLOYED, or ALREADY_LIVE when the live colour serves this version already
    color: str
    version: str
    run_id: str
    previous_color: str | None = None
    previous_version: str | None = None

    @classmethod
    def from_xcom(cls, value: Any) -> Release:
        return cls(**cls._read(value))
