"""PromotionApprovalOperator: a person approves the promotion in the Airflow UI.

Where it sits in the loop: evaluate -> **approve** -> promote. Built on the standard
provider's human-in-the-loop ``ApprovalOperator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

from mlops_airflow.utils.task_args import as_bool, read_payload
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context


class PromotionApprovalOperator(FailFastTemplates, ApprovalOperator):
    """
    Show the evaluation's decision summary and wait for Approve or Reject, when approval is required.

    Nobody is asked when approval is not required (``require_approval`` false) or when there
    is nothing to approve (the gates said no and nobody forced a promotion); the task then
    finishes at once. The answer is this task's XCom, which :class:`PromoteChampionOperator`
    records: unlike the plain ``ApprovalOperator`` a rejection does not skip the promotion
    task, so that the "no" and who said it land on the model version. No answer within
    ``response_timeout`` counts as Reject.

    :param require_approval: ask a person (templated; "True"/"False" strings are understood).
    :param force_promote: the run forces a promotion; the person approves the override (templated).
    :param evaluate_task_id: the task whose XCom is the evaluation report.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "require_approval", "force_promote")

    def __init__(
        self,
        *,
        require_approval: bool | str,
        force_promote: bool | str = False,
        evaluate_task_id: str = "evaluate_challenger",
        subject: str = "Promote the challenger?",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)
        super().__init__(subject=subject, **kwargs)
        self.require_approval = require_approval
        self.force_promote = force_promote
        self.evaluate_task_id = evaluate_task_id

    def execute(self, context: Context) -> Any:
        from mlops_airflow.core.evaluation import summary_table
        from mlops_airflow.core.payloads import EvaluationReport
        from mlops_airflow.core.promotion import approval_subject

        if not as_bool(self.require_approval):
            self.log.info("Approval is not required for this run")
            return {"required": False}
        report = read_payload(EvaluationReport, context["ti"].xcom_pull(task_ids=self.evaluate_task_id), f"the XCom of {self.evaluate_task_id}")
        forced = as_bool(self.force_promote)
        if not report.promotes and not forced:
            self.log.info("The gates said no and nobody forces the promotion: nothing to approve")
            return {"required": True, "approved": None}
        self.subject = approval_subject(report)
        note = "\n\n**The gates said no; this run forces the promotion.**" if forced and not report.promotes else ""
        self.body = summary_table(report) + note
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        # The base HITL handling (validation, timeouts without defaults), not ApprovalOperator's skipping.
        payload = HITLOperator.execute_complete(self, context, event)
        user = payload.get("responded_by_user") or {}
        approved = payload["chosen_options"] == [self.APPROVE]
        timed_out = bool(event.get("timedout"))
        by = user.get("name") or user.get("id")
        self.log.info("Promotion %s%s", "approved" if approved else "rejected", f" by {by}" if by else " (no answer before the timeout)" if timed_out else "")
        at = payload.get("responded_at")
        return {"required": True, "approved": approved, "by": by, "at": at.isoformat() if hasattr(at, "isoformat") else at, "timed_out": timed_out}
