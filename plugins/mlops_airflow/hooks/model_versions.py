"""A registered model's versions: what one must show before it serves, how two compare, how aliases go back.

- :func:`require_servable`: its promotion record, then the one safe format. Deploy idle colour,
  switch traffic and batch scoring ask
:func:`require_servable` about the version they are about to serve, before anything of it runs.
  A refusal fails the task without retries, and the DAG's failure callback
  (:class:`~mlops_airflow.observability.alerts.FailureAlert`) sends it to the alert channel.
- :func:`evaluate_registered_versions`: ``challenger`` against ``champion`` on the evaluation
  window (the evaluation task, and promotion's re-check when the champion moved).
- :func:`restore_previous_champion`: the rollback's alias move, read back.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import CHALLENGER_ALIAS, CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS, TAG_DECISION, TAG_DECISION_REASONS, Decision
from mlops_airflow.exceptions import MlopsError, UnservableVersionError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from mlops_airflow.core.payloads import EvaluationReport
    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.specs import ModelSpec


def require_promoted(name: str, version: ModelVersion, *, action: str, secret: str) -> None:
    """
    Refuse ``version`` unless its tags record a promotion sealed with ``secret`` (:func:`~mlops_airflow.core.promotion.serving_refusal`).

    :raises UnservableVersionError: no record, or another decision (no retry).
    :raises MlopsError: a promotion still under way; its retry completes the record (retryable).
    """
    from mlops_airflow.core.promotion import serving_refusal

    tags = dict(version.tags or {})
    reason = serving_refusal(tags, name=name, version=str(version.version), secret=secret)
    if reason is None:
        return
    message = f"refusing to {action} {name} v{version.version}: {reason}"
    if tags.get(TAG_DECISION) == Decision.PROMOTING:
        raise MlopsError(message)
    raise UnservableVersionError(message)


def require_servable(hook: MlflowHook, spec: ModelSpec, version: ModelVersion, *, action: str) -> str:
    """
    :func:`require_promoted`, then the model format check a server's loader would pass (nothing is loaded).

    :returns: the estimator kind whose package-trusted types the version loads with.
    :raises UnsafeModelVersionError: a version in any format but skops with the package's types.
    """
    name = spec.registered_model_name
    require_promoted(name, version, action=action, secret=hook.get_lock_secret())
    kind = hook.estimator_kind(version.run_id, spec.training.estimator.kind)
    hook.check_model(name, version.version, estimator_kind=kind)
    return kind


def alias_version(hook: MlflowHook, name: str, alias: str) -> str | None:
    version = hook.get_version_by_alias(name, alias)
    return None if version is None else str(version.version)


def restore_previous_champion(hook: MlflowHook, name: str, *, previous: str, current: str | None) -> dict[str, str | None]:
    """``champion`` to ``previous``, ``previous_champion`` to ``current``; read back, or a retryable error.

    The caller holds the registry lock (:func:`~mlops_airflow.hooks.registry_lock.registry_lock`).
    """
    hook.set_alias(name, CHAMPION_ALIAS, previous)
    if current is not None:
        hook.set_alias(name, PREVIOUS_CHAMPION_ALIAS, current)
    expected = {CHAMPION_ALIAS: previous, PREVIOUS_CHAMPION_ALIAS: current if current is not None else previous}
    observed = {alias: alias_version(hook, name, alias) for alias in expected}
    if observed != expected:
        raise MlopsError(f"aliases of {name} read back as {observed}, expected {expected}")
    return observed


def evaluate_registered_versions(hook: MlflowHook, spec: ModelSpec, window_end: dt.date, *, expected_challenger: str | None = None) -> EvaluationReport:
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
        return report.with_already_champion()
    return report
