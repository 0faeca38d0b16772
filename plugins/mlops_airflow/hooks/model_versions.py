"""What a version must show before it serves: its promotion record, then the one safe format.

Where it sits in the loop: deploy idle colour, switch traffic and batch scoring ask
:func:`require_servable` about the version they are about to serve, before anything of it runs.
A refusal fails the task without retries, and the DAG's failure callback
(:class:`~mlops_airflow.observability.alerts.FailureAlert`) sends it to the alert channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_airflow.constants import TAG_DECISION, Decision
from mlops_airflow.exceptions import MlopsError, UnservableVersionError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

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
