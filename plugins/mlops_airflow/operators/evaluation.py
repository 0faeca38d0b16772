"""EvaluateChallengerOperator: the evidence for a promotion.

Where it sits in the loop: train -> **evaluate** -> (approve) -> promote -> deploy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import CHALLENGER_ALIAS, CHAMPION_ALIAS, DEFAULT_MLFLOW_CONN_ID, TAG_DECISION, TAG_DECISION_REASONS, Decision
from mlops_airflow.exceptions import MlopsError
from mlops_airflow.observability.metrics import PROMOTION_PRIMARY_METRIC, gauge
from mlops_airflow.utils.task_args import as_date, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.specs import ModelSpec


def evaluate_registered_versions(hook: MlflowHook, spec: ModelSpec, window_end: dt.date, *, expected_challenger: str | None = None) -> dict[str, Any]:
    """
    Resolve ``challenger`` and ``champion``, score both on the evaluation window, judge the gates.

    :raises AirflowFailException: for an evaluation that cannot be computed (fail closed).
    :raises MlopsError: when the registry cannot be reached (retryable).
    """
    from mlflow.exceptions import MlflowException

    from mlops_airflow.core.evaluation import Candidate, check_no_leakage, evaluate, evaluation_window, fit_window, load_rows
    from mlops_airflow.stats.gating import EvaluationError

    name = spec.registered_model_name
    hook.ensure_reachable()
    try:
        challenger = hook.get_version_by_alias(name, CHALLENGER_ALIAS)
        if challenger is None:
            raise AirflowFailException(f"{name} has no {CHALLENGER_ALIAS!r} version to evaluate")
        if expected_challenger and str(challenger.version) != str(expected_challenger):
            raise AirflowFailException(
                f"{name}@{CHALLENGER_ALIAS} is v{challenger.version}, but this run trained v{expected_challenger}: another run moved the alias; re-run training"
            )
        champion = hook.get_version_by_alias(name, CHAMPION_ALIAS)
        start, end = evaluation_window(spec, window_end)
        try:
            versions = [("challenger", challenger)] + ([("champion", champion)] if champion is not None else [])
            for role, version in versions:
                check_no_leakage(f"{role} v{version.version}", fit_window(hook.get_run_params(version.run_id)), start, end)
            rows = load_rows(spec, start, end)
            candidates = {
                role: Candidate(
                    role,
                    str(version.version),
                    version.run_id,
                    hook.load_model(name, version.version, estimator_kind=hook.estimator_kind(version.run_id, spec.training.estimator.kind)),
                )
                for role, version in versions
            }
            report = evaluate(spec, rows, candidates["challenger"], candidates.get("champion"))
        except EvaluationError as err:
            message = f"evaluation of {name} v{challenger.version} cannot be computed: {err}"
            hook.set_version_tags(name, challenger.version, {TAG_DECISION: Decision.INVALID, TAG_DECISION_REASONS: str(err)[:4000]})
            raise AirflowFailException(message) from err
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise AirflowFailException(f"evaluation of {name}: {err.message}") from err
        raise MlopsError(f"MLflow failed while evaluating {name}: {err.message}") from err
    if champion is not None and str(champion.version) == str(challenger.version):
        report["already_champion"] = True
    return report


class EvaluateChallengerOperator(FailFastTemplates, BaseOperator):
    """
    Score ``challenger`` and ``champion`` on the same fresh rows and judge the spec's gates.

    The evaluation window is the newest ``promotion.evaluation_days`` days before
    ``window_end``: labelled, and held out from fitting. Both versions are loaded through
    the registry, scored on identical rows, compared overall, per segment and by a paired
    bootstrap of the primary metric. The report (XCom) carries the decision; the operator
    never moves an alias. An evaluation that cannot be computed (a NaN or missing metric,
    a model whose signature does not match the data) fails closed, without retries.

    :param spec_path: the model spec (templated).
    :param window_end: the training window's end, exclusive (templated).
    :param challenger_version: the version training registered; a different ``challenger``
        alias fails the task (templated, optional).
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("spec_path", "window_end", "challenger_version")

    def __init__(
        self,
        *,
        spec_path: str,
        window_end: str | dt.date,
        challenger_version: str | None = None,
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.window_end = window_end
        self.challenger_version = challenger_version
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.evaluation import summary_table
        from mlops_airflow.hooks.mlflow import MlflowHook

        spec = load_task_spec(self.spec_path)
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        report = evaluate_registered_versions(hook, spec, as_date(self.window_end, "window_end"), expected_challenger=self.challenger_version or None)
        self.log.info("Evaluation of %s:\n%s", spec.name, summary_table(report))
        primary = spec.promotion.primary_metric
        for role in ("challenger", "champion"):
            if report[role] is not None:
                gauge(PROMOTION_PRIMARY_METRIC, report[role]["metrics"][primary], model=spec.name, role=role, metric=primary)
        return report
