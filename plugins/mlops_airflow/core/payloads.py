"""What tasks hand each other through XCom and DAG-run conf: frozen dataclasses with ``to_xcom`` / ``from_xcom``.

Where it sits in the loop: train -> :class:`TrainingResult` -> evaluate -> :class:`EvaluationReport`
-> approve / promote -> deploy -> :class:`Release` -> smoke, switch, verify, rollback; the drift
sensor -> :class:`DriftSummary` -> the retrain gate, the retrain run's ``drift`` Param, the backfill.

On the wire each payload is plain JSON with two keys of its own: ``payload`` (its kind) and
``payload_version``. ``from_xcom`` refuses anything else with a :class:`PayloadError` that names
the payload and the problem, so a value rewritten through the API, or written by a later
release of this package, fails the task that reads it instead of being half-understood.
A value without those two keys was written before payloads were versioned (a run in flight
across an upgrade, a trainer image built before it): each payload reads that shape too.
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

    @staticmethod
    def is_unversioned(value: Any) -> bool:
        """Whether ``value`` has the shape written before payloads were versioned (no kind, no version)."""
        return isinstance(value, Mapping) and KIND_KEY not in value and VERSION_KEY not in value

    @classmethod
    def from_xcom(cls: type[_P], value: Any) -> _P:
        """The payload in ``value``; :class:`PayloadError` naming the problem for any other shape."""
        try:
            return cls._from_fields(cls._read(cls._upgrade(value) if cls.is_unversioned(value) else value, legacy=cls.is_unversioned(value)))
        except PayloadError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise PayloadError(f"{cls.KIND}: a field has the wrong shape: {type(err).__name__}: {err}") from None

    @classmethod
    def _upgrade(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """An unversioned value in this release's field names (the same names, unless a payload says otherwise)."""
        return value

    @classmethod
    def _from_fields(cls: type[_P], fields: dict[str, Any]) -> _P:
        return cls(**fields)

    @classmethod
    def _read(cls, value: Any, *, legacy: bool = False) -> dict[str, Any]:
        """The fields of ``value``, checked: a mapping of this kind and version with every required field."""
        if not isinstance(value, Mapping):
            raise PayloadError(f"{cls.KIND}: expected a JSON object, got {type(value).__name__}")
        kind, version = value.get(KIND_KEY), value.get(VERSION_KEY)
        if not legacy:
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
        return cls.from_xcom(value)

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
    def _from_fields(cls, fields: dict[str, Any]) -> TrainingResult:
        return cls(**{**fields, "version": str(fields["version"]), "metrics": {str(k): float(v) for k, v in dict(fields["metrics"]).items()}})


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
    def _upgrade(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """Before versioning the recommendation was ``decision`` and the window one ``window`` object."""
        upgraded = {k: v for k, v in value.items() if k not in ("decision", "window")}
        window = value.get("window") if isinstance(value.get("window"), Mapping) else {}
        upgraded.setdefault("recommendation", value.get("decision"))
        upgraded.setdefault("window_start", window.get("start"))
        upgraded.setdefault("window_end", window.get("end"))
        for name, default in (("primary_metric", ""), ("bootstrap", None), ("segments", ())):
            upgraded.setdefault(name, default)
        return upgraded

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]) -> EvaluationReport:
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
                "window_start": str(fields["window_start"]),
                "window_end": str(fields["window_end"]),
                "rows": int(fields["rows"]),
                "challenger": challenger,
                "champion": ScoredVersion.from_json(cls.KIND, fields["champion"]),
                "bootstrap": None if fields["bootstrap"] is None else dict(fields["bootstrap"]),
                "segments": tuple(fields["segments"]),
                "gates": tuple(fields["gates"]),
                "recommendation": recommendation,
                "reasons": tuple(fields["reasons"]),
                "already_champion": bool(fields.get("already_champion", False)),
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
    def _upgrade(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """Before versioning the onset was also written as ``backfill_start``, beside ``backfill_end``."""
        return {**value, "onset": value.get("onset", value.get("backfill_start"))}

    @classmethod
    def from_xcom(cls, value: Any) -> DriftSummary:
        summary = super().from_xcom(value)
        if cls.is_unversioned(value) and value.get("backfill_end") is not None:  # only an unversioned summary names its own last day
            return dataclasses.replace(summary, backfill_end=_day(cls.KIND, "backfill_end", value["backfill_end"]))
        return summary

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]) -> DriftSummary:
        features = fields.get("features") or {}
        if not isinstance(features, Mapping):
            raise PayloadError(f"{cls.KIND}: features must be an object, got {type(features).__name__}")
        try:
            parsed_features = {str(name): FeatureDrift(**dict(entry)) for name, entry in features.items()}
        except TypeError as err:
            raise PayloadError(f"{cls.KIND}: a feature's entry is malformed: {err}") from None
        days = {name: _day(cls.KIND, name, fields[name]) for name in ("window_start", "window_end", "onset")}
        return cls(
            **{
                **fields,
                **days,
                "champion_version": str(fields["champion_version"]),
                "rows": int(fields["rows"]),
                "drifted_features": tuple(fields["drifted_features"]),
                "features": parsed_features,
                "thresholds": dict(fields.get("thresholds") or {}),
                "backfill_end": None,
            }
        )


@dataclass(frozen=True)
class PerformanceSummary(_Payload):
    """What the performance monitor measured, and whether the champion has decayed.

    The labelled window is ``[labelled_start, labelled_end)``: the days whose labels are due.
    ``days`` holds each day's figures (realized, estimated, prediction shift, concept drift),
    ``verdict`` the window's decay judgement and ``segments`` the window's metric per segment.
    """

    KIND: ClassVar[str] = "performance_summary"

    model: str
    champion_version: str
    run_day: dt.date
    labelled_start: dt.date
    labelled_end: dt.date  # exclusive
    decayed: bool
    reasons: tuple[str, ...]
    retrain_run_id: str
    verdict: dict[str, Any] = field(default_factory=dict)
    days: tuple[dict[str, Any], ...] = ()
    segments: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]) -> PerformanceSummary:
        days = {name: _day(cls.KIND, name, fields[name]) for name in ("run_day", "labelled_start", "labelled_end")}
        if not isinstance(fields["decayed"], bool):
            raise PayloadError(f"{cls.KIND}: decayed must be true or false, got {fields['decayed']!r}")
        return cls(
            **{
                **fields,
                **days,
                "champion_version": str(fields["champion_version"]),
                "reasons": tuple(str(reason) for reason in fields["reasons"]),
                "verdict": dict(fields.get("verdict") or {}),
                "days": tuple(dict(day) for day in fields.get("days") or ()),
                "segments": dict(fields.get("segments") or {}),
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
    def _from_fields(cls, fields: dict[str, Any]) -> Release:
        if fields["color"] not in ("blue", "green"):
            raise PayloadError(f"{cls.KIND}: color {str(fields['color'])[:20]!r} is neither blue nor green")
        previous = fields.get("previous_color")
        if previous is not None and previous not in ("blue", "green"):
            raise PayloadError(f"{cls.KIND}: previous_color {str(previous)[:20]!r} is neither blue nor green")
        return cls(**{**fields, "version": str(fields["version"])})
