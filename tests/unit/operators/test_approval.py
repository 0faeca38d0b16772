"""PromotionApprovalOperator: asks only when needed; the answer is data, not a skip."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from helpers import task_context

from mlops_airflow.constants import Recommendation
from mlops_airflow.core.payloads import EvaluationReport, ScoredVersion
from mlops_airflow.operators.approval import PromotionApprovalOperator


def report(decision="promote"):
    return EvaluationReport(
        registered_model_name="churn",
        primary_metric="roc_auc",
        window_start="2026-02-22",
        window_end="2026-03-01",
        rows=2100,
        challenger=ScoredVersion("7", "r", {"roc_auc": 0.81}),
        champion=ScoredVersion("6", "q", {"roc_auc": 0.80}),
        bootstrap=None,
        segments=(),
        gates=({"name": "non-inferiority roc_auc", "passed": decision == "promote", "detail": "lower bound +0.0010 > -0.0050"},),
        recommendation=Recommendation(decision),
        reasons=("all gates passed",),
    ).to_xcom()


def operator(**kwargs):
    defaults = {"task_id": "approve_promotion", "require_approval": "True", "response_timeout": dt.timedelta(hours=1)}
    return PromotionApprovalOperator(**(defaults | kwargs))


class TestPromotionApprovalOperator:
    def test_timeout_means_reject(self):
        assert operator().defaults == ["Reject"]

    @pytest.mark.parametrize(
        ("require", "decision", "force", "expected"),
        [
            pytest.param("False", "promote", "False", {"required": False}, id="not-required"),
            pytest.param("", "promote", "False", {"required": False}, id="empty-template"),
            pytest.param("True", "reject", "False", {"required": True, "approved": None}, id="nothing-to-approve"),
        ],
    )
    def test_nobody_is_asked(self, require, decision, force, expected):
        with mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail") as upsert:
            result = operator(require_approval=require, force_promote=force).execute(task_context({"evaluate_challenger": report(decision)}))
        assert result == expected
        upsert.assert_not_called()

    @pytest.mark.parametrize(("decision", "force", "note"), [("promote", "False", False), ("reject", "True", True)])
    def test_asks_with_the_decision_summary(self, decision, force, note):
        from airflow.sdk.exceptions import TaskAwaitingInput

        approval = operator(force_promote=force)
        ctx = task_context({"evaluate_challenger": report(decision)})
        ctx["task_instance"] = mock.Mock(id="ti-1")
        with mock.patch("airflow.providers.standard.operators.hitl.upsert_hitl_detail") as upsert, pytest.raises(TaskAwaitingInput):
            approval.execute(ctx)
        request = upsert.call_args.kwargs
        assert request["subject"] == "Promote churn v7 to champion?"
        assert "| roc_auc | 0.8000 | 0.8100 |" in request["body"]
        assert ("forces the promotion" in request["body"]) is note
        assert request["options"] == ["Approve", "Reject"]

    def test_approve(self):
        approval = operator()
        event = {
            "chosen_options": ["Approve"],
            "params_input": {},
            "responded_at": dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC),
            "responded_by_user": {"id": "1", "name": "bob"},
        }
        result = approval.execute_complete(task_context(), event)
        assert result == {"required": True, "approved": True, "by": "bob", "at": "2026-03-01T09:00:00+00:00", "timed_out": False}

    def test_reject_does_not_skip_the_promotion_task(self):
        approval = operator()
        event = {
            "chosen_options": ["Reject"],
            "params_input": {},
            "responded_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            "responded_by_user": {"id": "2", "name": "carol"},
        }
        with mock.patch.object(approval, "skip") as skip:
            result = approval.execute_complete(task_context(), event)
        skip.assert_not_called()  # the promote task records the "no" and who said it
        assert (result["approved"], result["by"]) == (False, "carol")

    def test_timeout_with_the_default(self):
        event = {
            "chosen_options": ["Reject"],
            "params_input": {},
            "responded_at": dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
            "responded_by_user": None,
            "timedout": True,
        }
        result = operator().execute_complete(task_context(), event)
        assert (result["approved"], result["by"], result["timed_out"]) == (False, None, True)
