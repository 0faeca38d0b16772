"""A real `mlflow server --app-name basic-auth` on loopback: who may move an alias, and the default-password guard."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
import sampling
from fake_http import FakeServer, JsonHandler

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-password-for-tests"
PIPELINE = ("mlops-pipeline", "pipeline-password-for-tests")
VIEWER = ("viewer", "viewer-password-for-tests")
# Each attempt is one authenticated request (~1.5 s on a busy machine: the server hashes the
# password every time). The server's answer depends only on who asks for what, so more
# repeats of the same request add nothing; two move the alias to each version once.
ATTEMPTS = 20 if sampling.full() else 2  # MLOPS_TEST_FULL=1: the 20 attempts this test made before


def auth_env(folder, admin_password: str) -> dict[str, str]:
    config = folder / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password, "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-csrf-key"}


@contextmanager
def credentials(user: tuple[str, str] | None):
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {key: os.environ.get(key) for key in keys}
    for key in keys:
        os.environ.pop(key, None)
    if user:
        os.environ.update(dict(zip(keys, user, strict=True)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A basic-auth server with the pipeline identity set up and `churn` v1 registered by the pipeline."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from helpers import running_mlflow_server
    from mlflow.server.auth.client import AuthServiceClient
    from sklearn.linear_model import LogisticRegression

    from mlops_airflow.hooks.mlflow_auth import ensure_pipeline_identity

    folder = tmp_path_factory.mktemp("basic-auth")
    with running_mlflow_server(folder, app_name="basic-auth", env=auth_env(folder, ADMIN_PASSWORD)) as url, pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        # mlflow.set_tracking_uri writes these variables too; monkeypatch puts them back afterwards.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
        changes = ensure_pipeline_identity(
            url, admin_username="admin", admin_password=ADMIN_PASSWORD, username=PIPELINE[0], password=PIPELINE[1], models=["churn"]
        )
        assert (
            ensure_pipeline_identity(url, admin_username="admin", admin_password=ADMIN_PASSWORD, username=PIPELINE[0], password=PIPELINE[1], models=["churn"])
            == []
        )
        with credentials(("admin", ADMIN_PASSWORD)):
            AuthServiceClient(url).create_user(*VIEWER)
        with credentials(PIPELINE):
            mlflow.set_tracking_uri(url)
            mlflow.set_registry_uri(url)
            # Not mlflow.set_experiment: it would leave a process-wide active experiment behind.
            experiment_id = mlflow.MlflowClient(url, url).get_experiment_by_name("churn").experiment_id
            model = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
            with mlflow.start_run(experiment_id=experiment_id):
                info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
            for _ in range(2):
                mlflow.register_model(info.model_uri, "churn")
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
        yield url, changes


def alias_moves(url: str, user: tuple[str, str] | None) -> tuple[int, set[str]]:
    """Try ATTEMPTS alias changes as ``user``; how many succeeded, and the error codes of the rest."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    succeeded, codes = 0, set()
    with credentials(user):
        client = MlflowClient(url, url)
        for attempt in range(ATTEMPTS):
            try:
                client.set_registered_model_alias("churn", "champion", str(1 + attempt % 2))
                succeeded += 1
            except MlflowException as err:
                codes.add(err.error_code)
    return succeeded, codes


def test_setup_grants_the_pipeline_edit_on_its_model_only(secured):
    _, changes = secured
    assert changes == [
        "created user mlops-pipeline",
        "created registered model churn",
        "granted EDIT on experiment churn (was READ)",
        "granted EDIT on registered_model churn (was READ)",
    ]


@pytest.mark.parametrize(("who", "user"), [("nobody", None), ("read-only user", VIEWER), ("wrong password", (PIPELINE[0], "not-the-password"))])
def test_alias_changes_are_refused_without_the_pipelines_rights(secured, who, user):
    url, _ = secured
    succeeded, codes = alias_moves(url, user)
    print(f"\nunauthorised alias changes ({who}): {succeeded} of {ATTEMPTS} succeeded; refused with {sorted(codes)}")
    assert succeeded == 0
    assert codes <= {"PERMISSION_DENIED", "UNAUTHENTICATED"}


def test_the_pipeline_identity_moves_aliases_through_the_hook(secured, monkeypatch):
    url, _ = secured
    succeeded, _ = alias_moves(url, PIPELINE)
    assert succeeded == ATTEMPTS
    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.hooks.registry_lock import registry_lock

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": url, "login": PIPELINE[0], "password": PIPELINE[1]}))
    with credentials(None):
        hook = MlflowHook()
        with registry_lock(hook, "churn", owner="test", timeout=10):  # creates and deletes churn.promotion-lock
            hook.set_alias("churn", "challenger", "2")
        assert hook.get_version_by_alias("churn", "challenger").version == "2"


def test_the_pipeline_cannot_delete_its_model(secured):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    url, _ = secured
    with credentials(PIPELINE), pytest.raises(MlflowException) as info:
        MlflowClient(url, url).delete_registered_model("churn")
    assert info.value.error_code == "PERMISSION_DENIED"


class _LegacyAuthHandler(JsonHandler):
    legacy: LegacyAuthServer

    def do_GET(self):
        self.legacy.requests.append(self.path)
        ok = self.path.startswith("/api/2.0/mlflow/users/get") and self.headers.get("Authorization") == _basic("admin", "password1234")
        if ok:
            self.reply(200, {"user": {"id": 1, "is_admin": True, "username": "admin"}})
        else:
            self.reply(401, {"error_code": "UNAUTHENTICATED"})


class LegacyAuthServer(FakeServer):
    """Stands in for an MLflow server from before 3.x's fix: its basic-auth app still takes admin / password1234.

    Current MLflow refuses to start with that password and rejects logins with it, so the
    guard is for servers running an older MLflow; this fake answers users/get the way they do.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__(_LegacyAuthHandler, legacy=self)


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_a_server_with_the_default_admin_password_is_refused(monkeypatch):
    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.hooks.mlflow_auth import InsecureMlflowServerError

    with LegacyAuthServer() as legacy:
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": legacy.url, "login": PIPELINE[0], "password": PIPELINE[1]}))
        with pytest.raises(InsecureMlflowServerError, match="still accepts MLflow's default password for its admin user 'admin'"):
            MlflowHook().client  # noqa: B018 - the guard runs before the first call
        assert legacy.requests == ["/api/2.0/mlflow/users/get?username=admin"]  # nothing else was sent


def test_current_mlflow_refuses_the_legacy_password_itself(secured):
    """Why the guard above needs a stand-in: today's server rejects that login, so the guard lets it pass."""
    from mlops_airflow.hooks.mlflow_auth import refuse_default_admin_password

    url, _ = secured
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/users/get?username=admin", headers={"Authorization": _basic("admin", "password1234")})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    refuse_default_admin_password(url)  # so the guard lets this server pass: it raises nothing
