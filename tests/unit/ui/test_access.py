"""Who may see what: the auth manager's answers, asked per DAG of each model."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from mlops_airflow.ui import access


class AuthManager:
    """Says yes to DAG-run reads of the DAGs in ``readable`` (``None``: the question about DAGs in general)."""

    def __init__(self, readable: set[str | None]) -> None:
        self.readable = readable
        self.asked: list[tuple[str, object, str | None]] = []

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
        dag_id = details.id if details is not None else None
        self.asked.append((method, access_entity, dag_id))
        return dag_id in self.readable


def test_models_and_runs_follow_the_dags_the_user_may_read():
    manager = AuthManager({None, "retrain_churn", "drift_monitor_churn"})
    assert access.model_is_readable(manager, "alice", "churn")
    assert not access.model_is_readable(manager, "alice", "upsell")
    assert access.readable_dag_ids(manager, "alice", ["retrain_churn", "batch_score_churn", "drift_monitor_churn"]) == ["retrain_churn", "drift_monitor_churn"]
    assert {(method, str(entity)) for method, entity, _ in manager.asked} == {("GET", "DagAccessEntity.RUN")}


def test_a_user_who_may_not_read_dag_runs_at_all_is_refused(monkeypatch):
    import airflow.api_fastapi.app as airflow_app

    monkeypatch.setattr(airflow_app, "get_auth_manager", lambda: AuthManager(set()))
    with pytest.raises(HTTPException) as refused:
        access.require_dag_reader("mallory")
    assert refused.value.status_code == 403
    manager = AuthManager({None})
    monkeypatch.setattr(airflow_app, "get_auth_manager", lambda: manager)
    assert access.require_dag_reader("alice") is manager
