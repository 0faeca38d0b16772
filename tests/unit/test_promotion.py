"""decide(): gates propose, force overrides with a reason, approval has the last word."""

from __future__ import annotations

import pytest

from mlops_airflow.constants import Decision
from mlops_airflow.promotion import AUTOMATIC, Approval, decide, decision_record, decision_tags


def report(decision="promote"):
    return {
        "window": {"start": "2026-02-22", "end": "2026-03-01"},
        "champion": {"version": "3"},
        "gates": [
            {"name": "minimum roc_auc", "passed": True, "detail": "0.8 >= 0.7"},
            {"name": "non-inferiority roc_auc", "passed": decision == "promote", "detail": "d"},
        ],
        "decision": decision,
        "reasons": ["all gates passed"] if decision == "promote" else ["non-inferiority roc_auc: d"],
    }


NOT_ASKED = Approval(required=False)
APPROVED = Approval(required=True, approved=True, by="bob")
REJECTED = Approval(required=True, approved=False, by="carol")
TIMED_OUT = Approval(required=True, approved=False, timed_out=True)
NOTHING_TO_APPROVE = Approval(required=True, approved=None)


@pytest.mark.parametrize(
    ("decision", "approval", "force", "promote", "by", "first_reason"),
    [
        pytest.param("promote", NOT_ASKED, False, True, AUTOMATIC, "all gates passed", id="gates-yes"),
        pytest.param("reject", NOT_ASKED, False, False, AUTOMATIC, "non-inferiority roc_auc: d", id="gates-no"),
        pytest.param("reject", NOT_ASKED, True, True, "alice", "forced by alice: incident 42", id="forced"),
        pytest.param("promote", APPROVED, False, True, "bob", "all gates passed", id="approved"),
        pytest.param("promote", REJECTED, False, False, "carol", "approval rejected by carol", id="approval-rejected"),
        pytest.param("promote", TIMED_OUT, False, False, "approval timeout", "no approval before the timeout", id="approval-timeout"),
        pytest.param("reject", REJECTED, True, False, "carol", "approval rejected by carol", id="forced-but-rejected"),
        pytest.param("reject", NOTHING_TO_APPROVE, False, False, AUTOMATIC, "non-inferiority roc_auc: d", id="no-and-nobody-asked"),
    ],
)
def test_decide(decision, approval, force, promote, by, first_reason):
    verdict = decide(report(decision), approval, force=force, force_reason="incident 42", user="alice")
    assert (verdict.promote, verdict.by, verdict.reasons[0]) == (promote, by, first_reason)
    assert verdict.forced is (force and decision == "reject")


def test_approval_from_xcom():
    assert Approval.from_xcom(None) == NOT_ASKED
    assert Approval.from_xcom({"required": False}) == NOT_ASKED
    assert Approval.from_xcom({"required": True, "approved": True, "by": "bob", "at": "t", "timed_out": False}) == Approval(True, True, "bob", "t")


def test_tags_are_short_strings_naming_gates_window_and_run():
    verdict = decide(report(), APPROVED)
    tags = decision_tags(report(), verdict, Decision.PROMOTED, dag_run="retrain_churn/manual__1", previous_champion="3")
    assert tags["mlops.decision"] == "promoted"
    assert tags["mlops.decision.gates"] == "minimum roc_auc=pass, non-inferiority roc_auc=pass"
    assert tags["mlops.decision.window"] == "2026-02-22..2026-03-01"
    assert tags["mlops.decision.dag_run"] == "retrain_churn/manual__1"
    assert (tags["mlops.decision.by"], tags["mlops.decision.previous_champion"]) == ("bob", "3")
    assert all(isinstance(v, str) and len(v) <= 4000 for v in tags.values())


def test_a_rejection_names_no_previous_champion():
    tags = decision_tags(report("reject"), decide(report("reject"), NOT_ASKED), Decision.REJECTED, dag_run="d", previous_champion=None)
    assert "mlops.decision.previous_champion" not in tags


def test_record_carries_the_whole_evaluation():
    record = decision_record(report(), decide(report(), NOT_ASKED), Decision.PROMOTED, NOT_ASKED, dag_run="d", previous_champion="3")
    assert record["evaluation"] == report()
    assert (record["decision"], record["previous_champion"], record["approval"]["required"]) == ("promoted", "3", False)
