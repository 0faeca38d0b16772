"""decide(): gates propose, force overrides with a reason, approval has the last word."""

from __future__ import annotations

import pytest

from mlops_airflow.constants import Decision, Recommendation
from mlops_airflow.core.payloads import Approval, EvaluationReport, ScoredVersion
from mlops_airflow.core.promotion import AUTOMATIC, decide, decision_record, decision_tags

SUBJECT = "Promote churn v7 to champion?"


def report(decision="promote"):
    return EvaluationReport(
        registered_model_name="churn",
        primary_metric="roc_auc",
        window_start="2026-02-22",
        window_end="2026-03-01",
        rows=100,
        challenger=ScoredVersion("7", "r7", {"roc_auc": 0.8}),
        champion=ScoredVersion("3", "r3", {"roc_auc": 0.8}),
        bootstrap=None,
        segments=(),
        gates=(
            {"name": "minimum roc_auc", "passed": True, "detail": "0.8 >= 0.7"},
            {"name": "non-inferiority roc_auc", "passed": decision == "promote", "detail": "d"},
        ),
        recommendation=Recommendation(decision),
        reasons=("all gates passed",) if decision == "promote" else ("non-inferiority roc_auc: d",),
    )


NOT_ASKED = Approval(required=False)
APPROVED = Approval(required=True, approved=True, by="bob", at="t", answered=True, option="Approve", subject=SUBJECT)
APPROVED_BY_ALICE = Approval(required=True, approved=True, by="alice", at="t", answered=True, option="Approve", subject=SUBJECT)
APPROVED_OTHER_VERSION = Approval(required=True, approved=True, by="bob", at="t", answered=True, option="Approve", subject="Promote churn v6 to champion?")
REJECTED = Approval(required=True, approved=False, by="carol", answered=True, option="Reject")
TIMED_OUT = Approval(required=True, approved=False, timed_out=True)
NOT_ANSWERED = Approval(required=True)


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
        pytest.param("reject", NOT_ANSWERED, False, False, AUTOMATIC, "non-inferiority roc_auc: d", id="no-and-nobody-asked"),
        pytest.param(
            "promote",
            NOT_ANSWERED,
            False,
            False,
            "no approval",
            "approval required but no answer is recorded: answer the approval task, do not mark it",
            id="no-answer-recorded",
        ),
        pytest.param("promote", APPROVED_BY_ALICE, False, True, "alice", "all gates passed", id="own-approval-without-four-eyes"),
        pytest.param(
            "promote",
            APPROVED_OTHER_VERSION,
            False,
            False,
            "bob",
            "bob answered 'Promote churn v6 to champion?', not 'Promote churn v7 to champion?'",
            id="approval-of-another-version",
        ),
    ],
)
def test_decide(decision, approval, force, promote, by, first_reason):
    verdict = decide(report(decision), approval, force=force, force_reason="incident 42", user="alice")
    assert (verdict.promote, verdict.by, verdict.reasons[0]) == (promote, by, first_reason)
    assert verdict.forced is (force and decision == "reject")


@pytest.mark.parametrize("force", [False, True])
def test_four_eyes_refuses_an_approval_by_the_user_who_triggered_or_forced(force):
    verdict = decide(report("reject" if force else "promote"), APPROVED_BY_ALICE, force=force, force_reason="r", user="alice", four_eyes=True)
    assert (verdict.promote, verdict.reasons[0]) == (False, "four-eyes rule: alice approved a run they triggered; another person must approve")
    assert decide(report(), APPROVED, user="alice", four_eyes=True).promote is True


def record(**fields):
    return {"response_received": True, "chosen_options": ["Approve"], "responded_by_user": {"id": "7", "name": "bob"}, "responded_at": "t"} | fields


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        pytest.param(None, NOT_ANSWERED, id="no-record"),
        pytest.param({"response_received": False, "chosen_options": None, "responded_by_user": None}, NOT_ANSWERED, id="not-answered"),
        pytest.param(
            record(responded_by_user=None, chosen_options=["Reject"]), Approval(True, False, at="t", timed_out=True, option="Reject"), id="timeout-default"
        ),
        pytest.param(
            record(responded_by_user=None, chosen_options=["Approve"]),
            Approval(True, False, at="t", timed_out=True, option="Approve"),
            id="approve-default-is-no",
        ),
        pytest.param(record(), Approval(True, True, "bob", "t", answered=True, option="Approve", by_id="7"), id="approved"),
        pytest.param(record(chosen_options=["Reject"]), Approval(True, False, "bob", "t", answered=True, option="Reject", by_id="7"), id="rejected"),
        pytest.param(
            record(chosen_options=["Approve", "Reject"]), Approval(True, False, "bob", "t", answered=True, option="Approve, Reject", by_id="7"), id="both"
        ),
    ],
)
def test_approval_from_airflows_record(detail, expected):
    assert Approval.from_hitl(detail) == expected


def test_four_eyes_compares_user_name_and_id():
    approval = Approval.from_hitl(record())
    assert (approval.given_by("bob"), approval.given_by("7"), approval.given_by("alice"), approval.given_by(None)) == (True, True, False, False)


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


SECRET = "lock-secret"


def _servable(tags, secret=SECRET):
    from mlops_airflow.core.promotion import serving_refusal

    return serving_refusal(tags, name="churn", version="7", secret=secret)


def _sealed(tags, secret=SECRET):
    from mlops_airflow.core.promotion import decision_seal

    return {**tags, "mlops.decision.seal": decision_seal("churn", "7", tags, secret)}


def test_what_a_promotion_records_lets_the_version_serve():
    promoted = decision_tags(report(), decide(report(), NOT_ASKED), Decision.PROMOTED, dag_run="retrain_churn/manual__1", previous_champion=None)
    forced = decision_tags(
        report("reject"),
        decide(report("reject"), NOT_ASKED, force=True, force_reason="hotfix", user="ann"),
        Decision.PROMOTED,
        dag_run="d",
        previous_champion="1",
    )
    assert forced["mlops.decision.forced"] == "true"
    assert (_servable(_sealed(promoted)), _servable(_sealed(forced))) == (None, None)


def test_a_promotion_record_written_by_hand_or_changed_may_not_serve():
    """Anyone with EDIT on the model can write the tags; only the holder of the lock secret can seal them."""
    promoted = decision_tags(report(), decide(report(), NOT_ASKED), Decision.PROMOTED, dag_run="retrain_churn/manual__1", previous_champion=None)
    unsealed = "not sealed by this pipeline"
    assert unsealed in _servable(promoted)
    assert unsealed in _servable(_sealed(promoted, secret="another deployment's"))
    assert unsealed in _servable({**_sealed(promoted), "mlops.decision.by": "mallory"})
    assert unsealed in _servable(_sealed(promoted), secret="")  # sealed with a secret; checked without one
    from mlops_airflow.core.promotion import serving_refusal

    assert serving_refusal(_sealed(promoted), name="churn", version="8", secret=SECRET) is not None  # another version's seal


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        pytest.param({}, "no promotion decision on record", id="alias-moved-by-hand"),
        pytest.param({"mlops.decision": "rejected"}, "recorded decision is 'rejected'", id="rejected"),
        pytest.param({"mlops.decision": "invalid"}, "recorded decision is 'invalid'", id="invalid"),
        pytest.param({"mlops.decision": "promoting", "mlops.decision.dag_run": "d"}, "has not finished", id="half-way"),
        pytest.param({"mlops.decision": "promoted"}, "lacks its record (mlops.decision.dag_run, mlops.decision.by, mlops.decision.at)", id="bare-tag"),
        pytest.param(
            {
                "mlops.decision": "promoted",
                "mlops.decision.dag_run": "d",
                "mlops.decision.by": "ann",
                "mlops.decision.at": "t",
                "mlops.decision.forced": "true",
            },
            "lacks its record (mlops.decision.reasons)",
            id="forced-without-why",
        ),
    ],
)
def test_a_version_without_a_promotion_record_may_not_serve(tags, reason):
    assert reason in (_servable(tags) or "")


def test_record_carries_the_whole_evaluation():
    record = decision_record(report(), decide(report(), NOT_ASKED), Decision.PROMOTED, NOT_ASKED, dag_run="d", previous_champion="3")
    assert record["evaluation"] == report().to_xcom()
    assert (record["decision"], record["previous_champion"], record["approval"]["required"]) == ("promoted", "3", False)
