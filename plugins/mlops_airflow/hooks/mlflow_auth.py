"""MLflow authentication: the startup guard, and the pipeline's least-privilege identity.

Every non-embedded deployment runs MLflow's basic-auth app (``mlflow server --app-name
basic-auth``): without credentials nothing can be read or written, a read-only user can
only read, and the pipeline's own identity may edit exactly its models' registered models
and experiments (``EDIT``: new runs and versions, tags, aliases; no delete, no permission
changes).

``refuse_default_admin_password`` is the guard every MLflow call of the pipeline passes
first (through :class:`~mlops_airflow.hooks.mlflow.MlflowHook`): a server on which MLflow's
well-known default admin password still works is refused with a clear error, since its
registry is open to anyone who has read MLflow's documentation.

``python -m mlops_airflow.mlflow_auth setup`` creates the pipeline identity as the admin
(the compose stack's init step and a Helm post-install job run it); it is idempotent.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Iterable

# The admin password MLflow's basic-auth app shipped in basic_auth.ini before it required one.
KNOWN_DEFAULT_ADMIN_PASSWORDS = ("password1234",)
PIPELINE_PERMISSION = "EDIT"
_checked: set[str] = set()


class InsecureMlflowServerError(AirflowFailException):
    """The MLflow server accepts a well-known default admin password; the pipeline will not use it (no retry)."""


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _get_user_status(tracking_uri: str, username: str, password: str, timeout: float) -> int | None:
    """The HTTP status of the auth app's users/get as ``username``; None when the server does not answer."""
    query = urllib.parse.urlencode({"username": username})
    request = urllib.request.Request(f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/users/get?{query}", headers={"Authorization": _basic(username, password)})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured MLflow server
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def refuse_default_admin_password(tracking_uri: str, *, admin_username: str = "admin", timeout: float = 10.0) -> None:
    """
    Raise :class:`InsecureMlflowServerError` when ``admin_username`` can log in to this server
    with a well-known default password. Only http(s) servers are checked, once per process.
    A server without the auth app answers 404 here and passes (the embedded stack listens on
    loopback only); an unreachable one (or one answering 5xx) passes too, fails on the call
    that follows, and is checked again next time.
    """
    if not tracking_uri.startswith(("http://", "https://")) or tracking_uri in _checked:
        return
    answered = True
    for password in KNOWN_DEFAULT_ADMIN_PASSWORDS:
        status = _get_user_status(tracking_uri, admin_username, password, timeout)
        if status == 200:
            raise InsecureMlflowServerError(
                f"the MLflow server at {tracking_uri} still accepts MLflow's default password for its admin user {admin_username!r}: "
                "anyone can change its registry. Change the admin password (mlflow.server.auth update-password API), then retry."
            )
        answered = answered and status is not None and status < 500
    if answered:
        _checked.add(tracking_uri)


def ensure_pipeline_identity(tracking_uri: str, *, admin_username: str, admin_password: str, username: str, password: str, models: Iterable[str]) -> list[str]:
    """
    As the admin: create the pipeline user (or reset its password), and give it ``EDIT`` on
    each model's registered model and experiment, creating those when missing. Returns what
    it did, one line per change; running it again changes nothing.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.tracking import MlflowClient

    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=admin_username, MLFLOW_TRACKING_PASSWORD=admin_password)
    done: list[str] = []
    try:
        auth = AuthServiceClient(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            auth.get_user(username)
            auth.update_user_password(username, password)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            auth.create_user(username, password)
            done.append(f"created user {username}")
        for model in models:
            experiment = client.get_experiment_by_name(model)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(model)
            try:
                client.get_registered_model(model)
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                client.create_registered_model(model)
                done.append(f"created registered model {model}")
            for kind, target in (("experiment", experiment_id), ("registered_model", model)):
                current = auth.get_user_permission(username, kind, target).permission
                if current != PIPELINE_PERMISSION:
                    auth.grant_user_permission(username, kind, target, PIPELINE_PERMISSION)
                    done.append(f"granted {PIPELINE_PERMISSION} on {kind} {model} (was {current})")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return done
