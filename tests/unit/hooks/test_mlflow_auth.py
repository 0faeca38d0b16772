"""refuse_default_admin_password against loopback stand-ins: which servers are refused, what is sent, what is remembered.

A real basic-auth server is in tests/integration/test_mlflow_auth.py.
"""

from __future__ import annotations

import base64
import socket

import pytest
from airflow.sdk.exceptions import AirflowFailException
from fake_http import FakeServer, JsonHandler
from helpers import free_port

from mlops_airflow.hooks import mlflow_auth
from mlops_airflow.hooks.mlflow_auth import InsecureMlflowServerError, refuse_default_admin_password


class _UsersHandler(JsonHandler):
    owner: FakeAuthServer

    def do_GET(self):
        owner = self.owner
        owner.requests.append((self.path, self.headers.get("Authorization")))
        if owner.mode == "no-auth-app":
            return self.reply(404, {"error_code": "ENDPOINT_NOT_FOUND"})
        if owner.mode == "error":
            return self.reply(503, b"")
        if self.headers.get("Authorization") == owner.accepts:
            return self.reply(200, {"user": {"id": 1, "is_admin": True}})
        return self.reply(401, {"error_code": "UNAUTHENTICATED"})


class FakeAuthServer(FakeServer):
    """MLflow's users/get: 200 for ``user`` with ``password``, 401 otherwise; or 404 (``no-auth-app``), or 503 (``error``)."""

    def __init__(self, user: str = "admin", password: str = "a-real-password", mode: str = "auth") -> None:
        self.accepts = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.mode = mode
        self.requests: list[tuple[str, str | None]] = []
        super().__init__(_UsersHandler, owner=self)


@pytest.fixture(autouse=True)
def _nothing_checked_yet(monkeypatch):
    """The guard remembers checked servers for the process: each test starts with none."""
    monkeypatch.setattr(mlflow_auth, "_checked", set())


class TestRefuseDefaultAdminPassword:
    def test_a_server_taking_the_default_password_is_refused_without_retry(self):
        with FakeAuthServer(password="password1234") as server:
            expected = rf"the MLflow server at {server.url} still accepts MLflow's default password for its admin user 'admin'"
            with pytest.raises(InsecureMlflowServerError, match=expected):
                refuse_default_admin_password(server.url)
        assert issubclass(InsecureMlflowServerError, AirflowFailException)
        assert server.requests == [("/api/2.0/mlflow/users/get?username=admin", "Basic " + base64.b64encode(b"admin:password1234").decode())]

    def test_the_admin_user_named(self):
        with FakeAuthServer(user="root", password="password1234") as server:
            refuse_default_admin_password(server.url)  # admin with the default password: refused by the server
            with pytest.raises(InsecureMlflowServerError, match="for its admin user 'root'"):
                refuse_default_admin_password(server.url + "/", admin_username="root")
        assert [path for path, _ in server.requests] == ["/api/2.0/mlflow/users/get?username=admin", "/api/2.0/mlflow/users/get?username=root"]

    @pytest.mark.parametrize("mode", [pytest.param("auth", id="password-changed"), pytest.param("no-auth-app", id="no-auth-app")])
    def test_other_servers_pass_and_are_asked_once(self, mode):
        with FakeAuthServer(mode=mode) as server:
            refuse_default_admin_password(server.url)
            refuse_default_admin_password(server.url)
        assert len(server.requests) == 1

    def test_a_refused_server_is_asked_again(self):
        """Until its password changes, every MLflow call of the process fails."""
        with FakeAuthServer(password="password1234") as server:
            for _ in range(2):
                with pytest.raises(InsecureMlflowServerError):
                    refuse_default_admin_password(server.url)
        assert len(server.requests) == 2

    def test_an_unreachable_server_passes(self):
        """It fails on the call that follows, with that call's error."""
        refuse_default_admin_password(f"http://127.0.0.1:{free_port()}")

    def test_an_unreachable_server_is_checked_again(self):
        """Down at the first check, it may come up with the default password: only a server that answered is remembered."""
        refuse_default_admin_password(f"http://127.0.0.1:{free_port()}")
        assert mlflow_auth._checked == set()

    def test_a_server_answering_5xx_is_checked_again(self):
        with FakeAuthServer(password="password1234", mode="error") as server:
            refuse_default_admin_password(server.url)  # 503: passes, and is not remembered
            server.mode = "auth"
            with pytest.raises(InsecureMlflowServerError):
                refuse_default_admin_password(server.url)
        assert len(server.requests) == 2

    def test_a_server_that_never_answers_passes_after_the_timeout(self):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            refuse_default_admin_password(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.2)

    @pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "databricks"])
    def test_stores_that_are_not_http_are_not_checked(self, uri):
        refuse_default_admin_password(uri)
        assert mlflow_auth._checked == set()
