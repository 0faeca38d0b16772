"""Registry operators: move model aliases, verified by reading them back.

Where it sits in the loop: evaluate -> **promote** -> deploy; and the manual rollback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import CHAMPION_ALIAS, DEFAULT_MLFLOW_CONN_ID, PREVIOUS_CHAMPION_ALIAS
from mlops_airflow.exceptions import MlopsError

if TYPE_CHECKING:
    from airflow.sdk import Context


class RestorePreviousChampionOperator(BaseOperator):
    """
    Swap ``champion`` and ``previous_champion``: the version that served before becomes champion.

    Swapping (rather than deleting ``previous_champion``) keeps the rollback itself
    reversible: running it twice restores the starting state. The new aliases are read
    back; a mismatch is retried, never left half-moved silently.

    :param registered_model_name: the registered model (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("registered_model_name",)

    def __init__(self, *, registered_model_name: str, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registered_model_name = registered_model_name
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, str]:
        from mlops_airflow.hooks.mlflow import MlflowHook

        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        name = self.registered_model_name
        previous = hook.get_version_by_alias(name, PREVIOUS_CHAMPION_ALIAS)
        if previous is None:
            raise AirflowFailException(f"{name} has no {PREVIOUS_CHAMPION_ALIAS!r} version: there is nothing to roll back to")
        current = hook.get_version_by_alias(name, CHAMPION_ALIAS)
        hook.set_alias(name, CHAMPION_ALIAS, previous.version)
        if current is not None:
            hook.set_alias(name, PREVIOUS_CHAMPION_ALIAS, current.version)

        expected = {CHAMPION_ALIAS: str(previous.version), PREVIOUS_CHAMPION_ALIAS: str(current.version if current else previous.version)}
        observed = {}
        for alias in expected:
            version = hook.get_version_by_alias(name, alias)
            observed[alias] = str(version.version) if version else None
        if observed != expected:
            raise MlopsError(f"aliases of {name} read back as {observed}, expected {expected}")
        self.log.info("Rolled %s back: champion v%s (was v%s)", name, previous.version, current.version if current else None)
        return observed
