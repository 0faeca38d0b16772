"""Registry operators: move model aliases, verified by reading them back.

Where it sits in the loop: evaluate -> **promote** -> deploy; and the manual rollback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.assets import announce_champion
from mlops_airflow.constants import (
    CHAMPION_ALIAS,
    DEFAULT_AIRFLOW_API_CONN_ID,
    DEFAULT_MLFLOW_CONN_ID,
    PREVIOUS_CHAMPION_ALIAS,
    TAG_DECISION,
    TAG_DECISION_DAG_RUN,
    TAG_DECISION_REASONS,
    TAG_DECISION_SEAL,
    Decision,
)
from mlops_airflow.exceptions import MlopsError
from mlops_airflow.hooks.model_versions import alias_version, restore_previous_champion
from mlops_airflow.observability.metrics import PROMOTION_PROMOTED, PROMOTION_REJECTED, incr
from mlops_airflow.utils.task_args import as_bool, read_payload
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.core.payloads import Approval, EvaluationReport
    from mlops_airflow.core.promotion import Verdict


class ChampionChangedError(MlopsError):
    """The champion moved after the evaluation: the evidence is stale. The retry re-evaluates."""


class PromoteChampionOperator(FailFastTemplates, BaseOperator):
    """
    Act on the evaluation: move ``champion`` to the challenger, or record why not.

    Yes: under the registry's promotion lock, check that ``champion`` is still the version
    the evaluation compared against, point ``previous_champion`` at it and ``champion`` at
    the challenger, and read both back; any failure puts both aliases back. No: record the
    decision and skip, so that the deployment tasks downstream are skipped too; a "no" is
    not an error. Either way the decision lands as version tags and as a JSON artifact.

    A champion that moved since the evaluation fails the try with :class:`ChampionChangedError`;
    the retry re-evaluates against the new champion (unless a person approved the old
    evidence: then the run must start again).

    When approval is required, the answer is read here, from Airflow's own human-in-the-loop
    record of ``approval_task_id`` in this run (through the REST API), never from an XCom:
    an approval task marked success by hand, a forged XCom or the timeout's default
    promotes nothing, and the record says why.

    :param spec_path: the model spec (templated).
    :param window_end: the training window's end, for a re-evaluation (templated).
    :param evaluate_task_id: the task whose XCom is the evaluation report.
    :param approval_task_id: the approval task, or ``None`` when the DAG has none.
    :param require_approval: a person's "Approve" is needed (templated; "True"/"False" strings are understood).
    :param four_eyes: the approver must not be the user who triggered or forced the run.
    :param airflow_conn_id: an HTTP connection to Airflow's API server, to read the approval record.
    :param force_promote: promote even when the gates say no (templated; needs ``reason``).
    :param reason: why the run was started or forced (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    :param lock_timeout: how long to wait for another promotion of the same model.
    :param lock_ttl: after how long a lock whose holder died may be broken.
    """

    template_fields: Sequence[str] = ("spec_path", "window_end", "force_promote", "reason", "require_approval")

    def __init__(
        self,
        *,
        spec_path: str,
        window_end: str | dt.date,
        evaluate_task_id: str = "evaluate_challenger",
        approval_task_id: str | None = "approve_promotion",
        require_approval: bool | str = False,
        four_eyes: bool = False,
        airflow_conn_id: str = DEFAULT_AIRFLOW_API_CONN_ID,
        force_promote: bool | str = False,
        reason: str = "",
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        lock_timeout: dt.timedelta = dt.timedelta(minutes=10),
        lock_ttl: dt.timedelta = dt.timedelta(minutes=15),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.window_end = window_end
        self.evaluate_task_id = evaluate_task_id
        self.approval_task_id = approval_task_id
        self.require_approval = require_approval
        self.four_eyes = four_eyes
        self.airflow_conn_id = airflow_conn_id
        if as_bool(require_approval) and approval_task_id is None:
            raise ValueError("require_approval needs an approval_task_id: the task whose answer is read")
        self.force_promote = force_promote
        self.reason = reason
        self.mlflow_conn_id = mlflow_conn_id
        self.lock_timeout = lock_timeout
        self.lock_ttl = lock_ttl

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.payloads import EvaluationReport
        from mlops_airflow.core.promotion import decide
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.utils.task_args import load_task_spec

        ti = context["ti"]
        pulled = ti.xcom_pull(task_ids=self.evaluate_task_id)
        if not pulled:
            raise AirflowFailException(f"no evaluation report from {self.evaluate_task_id!r}")
        report = read_payload(EvaluationReport, pulled, f"the XCom of {self.evaluate_task_id}")
        force = as_bool(self.force_promote)
        if force and not str(self.reason or "").strip():
            raise AirflowFailException("force_promote needs a reason: fill in the 'reason' Param")
        spec = load_task_spec(self.spec_path)
        name = spec.registered_model_name
        dag_run = f"{ti.dag_id}/{ti.run_id}"
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        hook.ensure_reachable()

        version = report.challenger.version
        if report.already_champion:
            # A re-run after a successful promotion (training reused the version): nothing to decide.
            self.log.info("%s v%s is already the champion; nothing to decide", name, version)
            return {"decision": str(Decision.PROMOTED), "version": str(version), "moved": False}
        approval = self._approval(ti, asked=report.promotes or force)
        verdict = decide(report, approval, force=force, force_reason=str(self.reason), user=_triggering_user(context), four_eyes=self.four_eyes)
        if not verdict.promote:
            self._record(hook, report, verdict, Decision.REJECTED, approval, dag_run=dag_run, previous_champion=None)
            incr(PROMOTION_REJECTED, model=spec.name)
            raise AirflowSkipException(f"{name} v{version} not promoted: {'; '.join(verdict.reasons)}")

        from mlops_airflow.hooks.registry_lock import lock_owner, registry_lock

        owner = lock_owner(f"{dag_run}/{ti.task_id}", ti.try_number)
        with registry_lock(
            hook, name, owner=owner, timeout=self.lock_timeout.total_seconds(), ttl=self.lock_ttl.total_seconds(), log=self.log.warning
        ) as lease:
            champion = alias_version(hook, name, CHAMPION_ALIAS)
            if champion == str(version):
                self.log.info("%s v%s is already the champion; nothing to move", name, version)
                previous = self._finish_interrupted_record(hook, name, report, verdict, approval, dag_run=dag_run)
                if previous is not False:
                    # This run's earlier try moved the alias and died before it succeeded: its event was never sent, so this
                    # try sends it (a run cleared after it succeeded sends it again: consumers should be idempotent).
                    announce_champion(
                        context,
                        {
                            "version": str(version),
                            "previous": previous,
                            "run_id": report.challenger.run_id,
                            "decision": "forced" if force and not report.promotes else "promoted",
                            "dag_run": dag_run,
                        },
                    )
                return {"decision": str(Decision.PROMOTED), "version": str(version), "champion": champion, "moved": False}
            compared_with = report.champion.version if report.champion else None
            if champion != compared_with:
                report, verdict = self._reevaluate(context, hook, spec, report, approval, champion, compared_with, force)
                if not verdict.promote:
                    self._record(hook, report, verdict, Decision.REJECTED, approval, dag_run=dag_run, previous_champion=None)
                    incr(PROMOTION_REJECTED, model=spec.name)
                    raise AirflowSkipException(f"{name} v{version} not promoted on re-evaluation: {'; '.join(verdict.reasons)}")
            lease.ensure_held()  # a lock lost while re-evaluating (expired, deleted by hand) moves nothing
            self._move_aliases(hook, name, report, verdict, approval, dag_run=dag_run, champion=champion)
        incr(PROMOTION_PROMOTED, model=spec.name)
        announce_champion(
            context,
            {
                "version": str(version),
                "previous": champion,
                "run_id": report.challenger.run_id,
                "decision": "forced" if force and not report.promotes else "promoted",
                "dag_run": dag_run,
            },
        )
        self.log.info("Promoted %s v%s to %s (previous champion: %s); by %s", name, version, CHAMPION_ALIAS, champion, verdict.by)
        return {"decision": str(Decision.PROMOTED), "version": str(version), "previous_champion": champion, "moved": True}

    def _reevaluate(
        self, context, hook, spec, report: EvaluationReport, approval: Approval, champion, compared_with, force
    ) -> tuple[EvaluationReport, Verdict]:
        """The champion moved since the evaluation. First try: fail loudly. A retry: evaluate again, now."""
        from mlops_airflow.core.evaluation import summary_table
        from mlops_airflow.core.promotion import decide
        from mlops_airflow.hooks.model_versions import evaluate_registered_versions
        from mlops_airflow.utils.task_args import as_date

        name = spec.registered_model_name
        moved = f"the champion of {name} moved from {_v(compared_with)} to {_v(champion)} after the evaluation"
        if approval.required and approval.approved:
            raise AirflowFailException(f"{moved}; the approval was given for the old evidence, so start a new run to approve the new one")
        if context["ti"].try_number <= 1:
            raise ChampionChangedError(f"{moved}; the retry re-evaluates against {_v(champion)}")
        self.log.warning("%s; re-evaluating", moved)
        fresh = evaluate_registered_versions(hook, spec, as_date(self.window_end, "window_end"), expected_challenger=report.challenger.version)
        self.log.info("Re-evaluation of %s:\n%s", name, summary_table(fresh))
        current = fresh.champion.version if fresh.champion else None
        if current != champion:
            raise ChampionChangedError(f"the champion of {name} is moving under us ({_v(champion)} then {_v(current)}); retry later")
        return fresh, decide(fresh, approval, force=force, force_reason=str(self.reason), user=_triggering_user(context), four_eyes=self.four_eyes)

    def _approval(self, ti, *, asked: bool) -> Approval:
        """The human-in-the-loop record of this run's approval task; read only when a person was asked."""
        from mlops_airflow.core.payloads import Approval

        if not as_bool(self.require_approval):
            return Approval.not_required()
        if not asked:
            return Approval(required=True)  # the gates said no and nobody forces: nothing was put to a person
        from mlops_airflow.hooks.airflow_api import AirflowApiError, AirflowApiHook

        try:
            detail = AirflowApiHook(self.airflow_conn_id).get_conn().hitl_detail(ti.dag_id, ti.run_id, self.approval_task_id)
        except (AirflowApiError, OSError) as err:
            raise MlopsError(f"cannot read the approval record of {self.approval_task_id!r} through connection {self.airflow_conn_id!r}: {err}") from err
        approval = Approval.from_hitl(detail)
        self.log.info("Approval record of %s: %s", self.approval_task_id, approval)
        return approval

    def _move_aliases(self, hook, name: str, report: EvaluationReport, verdict: Verdict, approval: Approval, *, dag_run: str, champion: str | None) -> None:
        """previous_champion, then champion; read back; on any failure put both back as they were."""
        version = str(report.challenger.version)
        previous = alias_version(hook, name, PREVIOUS_CHAMPION_ALIAS)
        # The intent first: a promotion that dies half-way is visible as "promoting", never as nothing.
        hook.set_version_tags(name, version, {TAG_DECISION: str(Decision.PROMOTING), TAG_DECISION_DAG_RUN: dag_run})
        try:
            if champion is not None:
                hook.set_alias(name, PREVIOUS_CHAMPION_ALIAS, champion)
            hook.set_alias(name, CHAMPION_ALIAS, version)
            expected = {CHAMPION_ALIAS: version, PREVIOUS_CHAMPION_ALIAS: champion if champion is not None else previous}
            observed = {alias: alias_version(hook, name, alias) for alias in expected}
            if observed != expected:
                raise MlopsError(f"aliases of {name} read back as {observed}, expected {expected}")
            # Inside the try: a promotion whose record cannot be written is undone, and the retry redoes both.
            self._record(hook, report, verdict, Decision.PROMOTED, approval, dag_run=dag_run, previous_champion=champion)
        except Exception as err:
            self._restore(hook, name, champion=champion, previous=previous)
            hook.set_version_tags(name, version, {TAG_DECISION: str(Decision.FAILED), TAG_DECISION_REASONS: f"alias move undone: {err}"[:4000]})
            if isinstance(err, MlopsError):
                raise
            raise MlopsError(f"moving the aliases of {name} failed and was undone: {err}") from err

    def _finish_interrupted_record(self, hook, name: str, report: EvaluationReport, verdict: Verdict, approval: Approval, *, dag_run: str) -> str | None | bool:
        """An earlier try of this run moved the aliases and died before its record was complete: write it again.

        Returns the champion before it (a version, or None) when this run promoted it; ``False`` when another run did.
        """
        current = hook.get_version_by_alias(name, CHAMPION_ALIAS)
        if current is None or (current.tags or {}).get(TAG_DECISION_DAG_RUN) != dag_run:
            return False
        self.log.info("An earlier try of %s promoted v%s; completing its decision record", dag_run, current.version)
        previous = alias_version(hook, name, PREVIOUS_CHAMPION_ALIAS)
        self._record(hook, report, verdict, Decision.PROMOTED, approval, dag_run=dag_run, previous_champion=previous)
        return previous

    def _restore(self, hook, name: str, *, champion: str | None, previous: str | None) -> None:
        for alias, value in ((CHAMPION_ALIAS, champion), (PREVIOUS_CHAMPION_ALIAS, previous)):
            try:
                if value is None:
                    hook.delete_alias(name, alias)
                else:
                    hook.set_alias(name, alias, value)
            except Exception:  # keep undoing the rest; the task fails either way
                self.log.exception("Could not restore %s@%s to %s", name, alias, value)

    def _record(
        self, hook, report: EvaluationReport, verdict: Verdict, decision: Decision, approval: Approval, *, dag_run: str, previous_champion: str | None
    ) -> None:
        """Tags on the version, the JSON artifact on its run, the table in the log."""
        from mlops_airflow.core.evaluation import summary_table
        from mlops_airflow.core.promotion import decision_artifact, decision_record, decision_seal, decision_tags

        name, version = report.registered_model_name, report.challenger.version
        tags = decision_tags(report, verdict, decision, dag_run=dag_run, previous_champion=previous_champion)
        if decision is Decision.PROMOTED:
            tags[TAG_DECISION_SEAL] = decision_seal(name, str(version), tags, hook.get_lock_secret())
        hook.set_version_tags(name, version, tags)
        record = decision_record(report, verdict, decision, approval, dag_run=dag_run, previous_champion=previous_champion)
        hook.log_dict(report.challenger.run_id, record, decision_artifact(dag_run))
        self.log.info("%s v%s: %s (%s)\n%s", name, version, decision, "; ".join(verdict.reasons), summary_table(report))


def _triggering_user(context: Context) -> str | None:
    return getattr(context.get("dag_run"), "triggering_user_name", None)


def _v(version: str | None) -> str:
    return "no champion" if version is None else f"v{version}"


class RestorePreviousChampionOperator(FailFastTemplates, BaseOperator):
    """
    Swap ``champion`` and ``previous_champion``: the version that served before becomes champion.

    Swapping (rather than deleting ``previous_champion``) keeps the rollback itself
    reversible: running it twice restores the starting state. Both aliases are read and
    moved under the registry's promotion lock, so a rollback never interleaves with a
    promotion. The new aliases are read back; a mismatch is retried, never left half-moved
    silently.

    :param registered_model_name: the registered model (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    :param lock_timeout: how long to wait for a promotion of the same model to finish.
    :param lock_ttl: after how long a lock whose holder died may be broken.
    """

    template_fields: Sequence[str] = ("registered_model_name",)

    def __init__(
        self,
        *,
        registered_model_name: str,
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        lock_timeout: dt.timedelta = dt.timedelta(minutes=10),
        lock_ttl: dt.timedelta = dt.timedelta(minutes=15),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.registered_model_name = registered_model_name
        self.mlflow_conn_id = mlflow_conn_id
        self.lock_timeout = lock_timeout
        self.lock_ttl = lock_ttl

    def execute(self, context: Context) -> dict[str, str]:
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.hooks.registry_lock import lock_owner, registry_lock

        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        name = self.registered_model_name
        ti = context["ti"]
        owner = lock_owner(f"{ti.dag_id}/{ti.run_id}/{ti.task_id}", ti.try_number)
        with registry_lock(
            hook, name, owner=owner, timeout=self.lock_timeout.total_seconds(), ttl=self.lock_ttl.total_seconds(), log=self.log.warning
        ) as lease:
            previous = hook.get_version_by_alias(name, PREVIOUS_CHAMPION_ALIAS)
            if previous is None:
                raise AirflowFailException(f"{name} has no {PREVIOUS_CHAMPION_ALIAS!r} version: there is nothing to roll back to")
            current = hook.get_version_by_alias(name, CHAMPION_ALIAS)
            lease.ensure_held()
            observed = restore_previous_champion(hook, name, previous=str(previous.version), current=str(current.version) if current else None)
        self.log.info("Rolled %s back: champion v%s (was v%s)", name, previous.version, current.version if current else None)
        announce_champion(
            context,
            {
                "version": str(previous.version),
                "previous": str(current.version) if current else None,
                "run_id": previous.run_id,
                "decision": "rolled_back",
                "dag_run": f"{ti.dag_id}/{ti.run_id}",
            },
        )
        return observed
