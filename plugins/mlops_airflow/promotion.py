"""From an evaluation report, an approval and the run's Params to one decision, and its record.

Airflow-free. The record is what the MLflow UI shows on the model version (tags) and
what an auditor reads later (the JSON artifact): who decided, on what evidence, why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from mlops_airflow.constants import (
    TAG_DECISION,
    TAG_DECISION_AT,
    TAG_DECISION_BY,
    TAG_DECISION_COMPARED_WITH,
    TAG_DECISION_DAG_RUN,
    TAG_DECISION_FORCED,
    TAG_DECISION_GATES,
    TAG_DECISION_PREVIOUS_CHAMPION,
    TAG_DECISION_REASONS,
    TAG_DECISION_WINDOW,
    Decision,
)
from mlops_airflow.evaluation import PROMOTE

# MLflow caps a tag value at 5000 characters (8000 on newer servers); stay well below.
_MAX_TAG = 4000
AUTOMATIC = "airflow (gates)"


@dataclass(frozen=True)
class Approval:
    """What the approval task handed over. ``required=False``: nobody was asked."""

    required: bool
    approved: bool | None = None
    by: str | None = None
    at: str | None = None
    timed_out: bool = False

    @classmethod
    def from_xcom(cls, value: dict[str, Any] | None) -> Approval:
        if not value:
            return cls(required=False)
        return cls(**{k: value.get(k) for k in ("required", "approved", "by", "at")}, timed_out=bool(value.get("timed_out")))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: tuple[str, ...]
    by: str
    forced: bool = False


def decide(report: dict[str, Any], approval: Approval, *, force: bool = False, force_reason: str = "", user: str | None = None) -> Verdict:
    """
    The final word. The gates propose; ``force_promote`` overrides a "no" (with its reason and
    its user on record); a required approval that did not say yes, a rejection or a timeout,
    always means no.
    """
    gates_say_yes = report["decision"] == PROMOTE
    reasons = list(report["reasons"])
    by = AUTOMATIC
    forced = False
    if not gates_say_yes and force:
        forced = True
        by = user or "unknown user"
        reasons = [f"forced by {by}: {force_reason}", *(f"overridden: {r}" for r in reasons)]
    if approval.required and (gates_say_yes or forced):
        if approval.timed_out:
            return Verdict(False, ("no approval before the timeout", *reasons), "approval timeout", forced)
        if not approval.approved:
            return Verdict(False, (f"approval rejected by {approval.by or 'unknown user'}", *reasons), approval.by or "unknown user", forced)
        reasons.append(f"approved by {approval.by or 'unknown user'}")
        by = approval.by or by
    return Verdict(gates_say_yes or forced, tuple(reasons), by, forced)


def decision_tags(report: dict[str, Any], verdict: Verdict, decision: Decision, *, dag_run: str, previous_champion: str | None) -> dict[str, str]:
    """The version tags of one decision; every value is a short string."""
    gates = ", ".join(f"{g['name']}={'pass' if g['passed'] else 'fail'}" for g in report["gates"]) or "none"
    tags = {
        TAG_DECISION: str(decision),
        TAG_DECISION_REASONS: "; ".join(verdict.reasons),
        TAG_DECISION_GATES: gates,
        TAG_DECISION_WINDOW: f"{report['window']['start']}..{report['window']['end']}",
        TAG_DECISION_DAG_RUN: dag_run,
        TAG_DECISION_COMPARED_WITH: report["champion"]["version"] if report["champion"] else "none",
        TAG_DECISION_BY: verdict.by,
        TAG_DECISION_AT: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        TAG_DECISION_FORCED: str(verdict.forced).lower(),
    }
    if decision is Decision.PROMOTED:
        tags[TAG_DECISION_PREVIOUS_CHAMPION] = previous_champion or "none"
    return {k: v[:_MAX_TAG] for k, v in tags.items()}


def decision_record(
    report: dict[str, Any], verdict: Verdict, decision: Decision, approval: Approval, *, dag_run: str, previous_champion: str | None
) -> dict[str, Any]:
    """The JSON artifact: the whole evaluation report with the verdict beside it."""
    return {
        "decision": str(decision),
        "reasons": list(verdict.reasons),
        "by": verdict.by,
        "forced": verdict.forced,
        "approval": approval.as_dict(),
        "dag_run": dag_run,
        "previous_champion": previous_champion,
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "evaluation": report,
    }
