"""Who may see what on the Models page: Airflow's own auth, which Airflow does not apply to plugin apps.

The user comes from the same JWT Airflow's UI and REST API take (the ``Authorization: Bearer``
header or the UI's session cookie): none or an expired one is 401, one that does not verify is
403. A user must be allowed to read DAGs at all (else 403), and sees a model only when the auth
manager lets them read the runs of its ``retrain_<model>`` DAG; its runs table shows only the DAGs
they may read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException, status

from mlops_airflow.constants import RETRAIN_DAG_PREFIX


def _dag_runs_readable(auth_manager: Any, user: Any, dag_id: str | None) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    details = DagDetails(id=dag_id) if dag_id else None
    return bool(auth_manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, details=details, user=user))


def require_dag_reader(user: Any) -> Any:
    """The auth manager, once it says ``user`` may read DAG runs at all; 403 otherwise."""
    from airflow.api_fastapi.app import get_auth_manager

    auth_manager = get_auth_manager()
    if not _dag_runs_readable(auth_manager, user, None):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "reading DAG runs is not allowed for this user: the Models page shows nothing else")
    return auth_manager


def readable_dag_ids(auth_manager: Any, user: Any, dag_ids: Sequence[str]) -> list[str]:
    return [dag_id for dag_id in dag_ids if _dag_runs_readable(auth_manager, user, dag_id)]


def model_is_readable(auth_manager: Any, user: Any, model: str) -> bool:
    return _dag_runs_readable(auth_manager, user, f"{RETRAIN_DAG_PREFIX}{model}")
