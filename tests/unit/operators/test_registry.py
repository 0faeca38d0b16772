"""The registry operators against a real MLflow store: the manual rollback, under the registry lock."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowFailException
from helpers import task_context

PROMOTION = "retrain_churn/manual__other/promote_champion/try1@worker~1:1"


@pytest.fixture
def registry(mlflow_store):
    """churn v1 (previous champion) and v2 (champion)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store, mlflow_store)
    client.create_registered_model("churn")
    for _ in range(2):
        client.create_model_version("churn", source="file:///nowhere", run_id=None)
    client.set_registered_model_alias("churn", "champion", "2")
    client.set_registered_model_alias("churn", "previous_champion", "1")
    return client


def aliases(client) -> dict[str, str]:
    return {alias: str(client.get_model_version_by_alias("churn", alias).version) for alias in ("champion", "previous_champion")}


def restore(**kwargs):
    from mlops_airflow.operators.registry import RestorePreviousChampionOperator

    return RestorePreviousChampionOperator(task_id="restore_previous_champion", registered_model_name="churn", **kwargs).execute(
        task_context(dag_id="rollback_churn", task_id="restore_previous_champion")
    )


class TestRestorePreviousChampionOperator:
    def test_swaps_the_aliases_and_releases_the_lock(self, registry):
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.hooks.registry_lock import lock_name

        assert restore() == {"champion": "1", "previous_champion": "2"}
        assert aliases(registry) == {"champion": "1", "previous_champion": "2"}
        assert MlflowHook().get_registered_model_tags(lock_name("churn")) is None

    def test_does_not_interleave_with_a_promotion_holding_the_lock(self, registry):
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.hooks.registry_lock import RegistryLockTimeoutError, registry_lock

        with registry_lock(MlflowHook(), "churn", owner=PROMOTION):
            with pytest.raises(RegistryLockTimeoutError, match=f"promotion lock of churn is held by '{PROMOTION}'"):
                restore(lock_timeout=dt.timedelta(seconds=0.5))
            assert aliases(registry) == {"champion": "2", "previous_champion": "1"}

    def test_a_foreign_lock_is_reported_naming_it(self, registry):
        from mlops_airflow.hooks.registry_lock import ForeignRegistryLockError

        registry.create_registered_model("churn.promotion-lock", tags={"mlops.lock.owner": "mallory"})
        with pytest.raises(ForeignRegistryLockError, match=r"registered model 'churn.promotion-lock' .* not created by this pipeline.*claims 'mallory'"):
            restore()
        assert aliases(registry) == {"champion": "2", "previous_champion": "1"}
        assert isinstance(ForeignRegistryLockError("x"), AirflowFailException)  # no retries: a person removes it

    def test_nothing_to_roll_back_to_fails_and_releases_the_lock(self, registry):
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.hooks.registry_lock import lock_name

        registry.delete_registered_model_alias("churn", "previous_champion")
        with pytest.raises(AirflowFailException, match="nothing to roll back to"):
            restore()
        assert MlflowHook().get_registered_model_tags(lock_name("churn")) is None
