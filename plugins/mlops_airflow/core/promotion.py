"""From an evaluation report, an approval and the run's Params to one decision, and its record.

Airflow-free. The record is what the MLflow UI shows on the model version (tags) and
what an auditor reads later (the JSON artifact): who decided, on what evidence, why.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops_airflow.constants import (
    DECISION_ARTIFACT_DIR,
    TAG_DECISION,
    TAG_DECISION_AT,
    TAG_DECISION_BY,
    TAG_DECISION_COMPARED_WITH,
    TAG_DECISION_DAG_RUN,
    TAG_DECISION_FORCED,
    TAG_DECISION_GATES,
    TAG_DECISION_PREVIOUS_CHAMPION,
    TAG_DECISION_REASONS,
    TAG_DECISION_SEAL,
    TAG_DECISION_WINDOW,
    Decision,
)
from mlops_airflow.core.payloads import Approval, EvaluationReport

# MLflow caps a tag value at 5000 characters (8000 on newer servers); stay well below.
_MAX_TAG = 4000
AUTOMATIC = "airflow (gates)"


def approval_subject(report: EvaluationReport) -> str:
    """What the approval task asks, naming the version: the answer counts only for that question."""
    return f"Promote {report.registered_model_name} v{report.challenger.version} to champion?"


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: tuple[str, ...]
    by: str
    forced: bool = False


def decide(
    report: EvaluationReport, approval: Approval, *, force: bool = False, force_reason: str = "", user: str | None = None, four_eyes: bool = False
) -> Verdict:
    """
    The final word. The gates propose; ``force_promote`` overrides a "no" (with its reason and
    its user on record); a required approval without a person's "Approve" (a rejection, a
    timeout, no answer at all) always means no. ``four_eyes``: the approver must not be
    ``user``, who triggered (or forced) the run.
    """
    gates_say_yes = report.promotes
    reasons = list(report.reasons)
    by = AUTOMATIC
    forced = False
    if not gates_say_yes and force:
        forced = True
        by = user or "unknown user"
        reasons = [f"forced by {by}: {force_reason}", *(f"overridden: {r}" for r in reasons)]
    if approval.required and (gates_say_yes or forced):
        if approval.timed_out:
            return Verdict(False, ("no approval before the timeout", *reasons), "approval timeout", forced)
        if not approval.answered:
            return Verdict(False, ("approval required but no answer is recorded: answer the approval task, do not mark it", *reasons), "no approval", forced)
        if not approval.approved:
            return Verdict(False, (f"approval rejected by {approval.by}", *reasons), str(approval.by), forced)
        asked = approval_subject(report)
        if approval.subject != asked:
            # The report travelled by XCom, which the API can rewrite after the answer: an "Approve" of one version is not one of another.
            return Verdict(False, (f"{approval.by} answered {approval.subject!r}, not {asked!r}", *reasons), str(approval.by), forced)
        if four_eyes and approval.given_by(user):
            return Verdict(
                False, (f"four-eyes rule: {approval.by} approved a run they triggered; another person must approve", *reasons), str(approval.by), forced
            )
        reasons.append(f"approved by {approval.by} at {approval.at}")
        by = str(approval.by)
    return Verdict(gates_say_yes or forced, tuple(reasons), by, forced)


def decision_tags(report: EvaluationReport, verdict: Verdict, decision: Decision, *, dag_run: str, previous_champion: str | None) -> dict[str, str]:
    """The version tags of one decision; every value is a short string."""
    gates = ", ".join(f"{g['name']}={'pass' if g['passed'] else 'fail'}" for g in report.gates) or "none"
    tags = {
        TAG_DECISION: str(decision),
        TAG_DECISION_REASONS: "; ".join(verdict.reasons),
        TAG_DECISION_GATES: gates,
        TAG_DECISION_WINDOW: f"{report.window_start}..{report.window_end}",
        TAG_DECISION_DAG_RUN: dag_run,
        TAG_DECISION_COMPARED_WITH: report.champion.version if report.champion else "none",
        TAG_DECISION_BY: verdict.by,
        TAG_DECISION_AT: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        TAG_DECISION_FORCED: str(verdict.forced).lower(),
    }
    if decision is Decision.PROMOTED:
        tags[TAG_DECISION_PREVIOUS_CHAMPION] = previous_champion or "none"
    return {k: v[:_MAX_TAG] for k, v in tags.items()}


# What a promotion's seal covers: the decision and its record.
_SEALED = (TAG_DECISION, TAG_DECISION_DAG_RUN, TAG_DECISION_BY, TAG_DECISION_AT, TAG_DECISION_FORCED, TAG_DECISION_REASONS)


def decision_seal(name: str, version: str, tags: Mapping[str, str], secret: str) -> str:
    """The HMAC over a version's decision record (:mod:`mlops_airflow.core.seals`, keyed by the lock secret)."""
    from mlops_airflow.core.seals import mac

    return mac(secret, "decision", name, str(version), *(tags.get(tag, "") for tag in _SEALED))


def serving_refusal(tags: Mapping[str, str], *, name: str, version: str, secret: str) -> str | None:
    """
    Why a version may not serve (be deployed, switched to, or batch score), or ``None`` when it may.

    A version serves when its recorded decision is ``promoted`` with the record a promotion writes
    (the run that decided, who, when; a forced one also why), sealed by the pipeline: anyone with
    EDIT on the model can write tags, only the holder of the lock secret can seal them. A version
    that a rollback restores was promoted before and still carries that record. An alias moved
    by hand carries none.
    """
    decision = tags.get(TAG_DECISION)
    if decision is None:
        return f"it has no promotion decision on record ({TAG_DECISION} is not set; was the alias moved by hand?)"
    if decision == Decision.PROMOTING:
        return f"its promotion has not finished ({TAG_DECISION}={decision!r}); the promotion's retry completes it"
    if decision != Decision.PROMOTED:
        return f"its recorded decision is {decision!r}, not {str(Decision.PROMOTED)!r}"
    needed = [TAG_DECISION_DAG_RUN, TAG_DECISION_BY, TAG_DECISION_AT]
    if tags.get(TAG_DECISION_FORCED) == "true":
        needed.append(TAG_DECISION_REASONS)
    missing = [tag for tag in needed if not tags.get(tag)]
    if missing:
        return f"its {str(Decision.PROMOTED)!r} decision lacks its record ({', '.join(missing)})"
    from mlops_airflow.core.seals import verifies

    if not verifies(tags.get(TAG_DECISION_SEAL), secret, "decision", name, str(version), *(tags.get(tag, "") for tag in _SEALED)):
        return (
            f"its promotion record is not sealed by this pipeline ({TAG_DECISION_SEAL} missing or wrong: "
            "written by hand, changed since, or sealed with another lock secret); promote it through retrain_<model>"
        )
    return None


def decision_artifact(dag_run: str) -> str:
    """Where a decision's record lies on the challenger's run: ``promotion/<dag run id, made path-safe>.json``."""
    return f"{DECISION_ARTIFACT_DIR}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', dag_run)}.json"


def decision_record(
    report: EvaluationReport, verdict: Verdict, decision: Decision, approval: Approval, *, dag_run: str, previous_champion: str | None
) -> dict[str, Any]:
    """The JSON artifact: the whole evaluation report with the verdict beside it."""
    return {
        "decision": str(decision),
        "reasons": list(verdict.reasons),
        "by": verdict.by,
        "forced": verdict.forced,
        "approval": approval.to_xcom(),
        "dag_run": dag_run,
        "previous_champion": previous_champion,
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "evaluation": report.to_xcom(),
    }
