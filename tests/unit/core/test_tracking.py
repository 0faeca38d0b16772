"""tracking_server_problem against loopback stand-ins: a healthy server, a failing one, nobody listening, one that never answers."""

from __future__ import annotations

import socket

import pytest
from fake_http import FakeServer, JsonHandler
from helpers import free_port

from mlops_airflow.core.tracking import tracking_server_problem


class _HealthHandler(JsonHandler):
    owner: HealthServer

    def do_GET(self):
        self.owner.paths.append(self.path)
        self.reply(self.owner.status, b"OK" if self.owner.status == 200 else b"down", "text/plain")


class HealthServer(FakeServer):
    """Answers every GET with ``status``; records the paths asked for."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.paths: list[str] = []
        super().__init__(_HealthHandler, owner=self)


class TestTrackingServerProblem:
    @pytest.mark.parametrize(
        "uri",
        [
            pytest.param("sqlite:///mlflow.db", id="sqlite"),
            pytest.param("file:///tmp/mlruns", id="file"),
            pytest.param("databricks", id="databricks"),
        ],
    )
    def test_stores_that_are_not_http_are_not_asked(self, uri):
        assert tracking_server_problem(uri) is None

    @pytest.mark.parametrize("suffix", [pytest.param("", id="bare"), pytest.param("/", id="trailing-slash")])
    def test_a_healthy_server_has_no_problem(self, suffix):
        with HealthServer(200) as server:
            assert tracking_server_problem(server.url + suffix) is None
            assert server.paths == ["/health"]

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_a_server_error_is_a_problem(self, status):
        with HealthServer(status) as server:
            assert tracking_server_problem(server.url) == f"MLflow at {server.url} answered {status} on /health"

    @pytest.mark.parametrize("status", [401, 403, 404])
    def test_a_client_error_is_not_an_outage(self, status):
        """The server answers: a missing /health route or an auth app in front is for the real call to report."""
        with HealthServer(status) as server:
            assert tracking_server_problem(server.url) is None

    def test_nobody_listening(self):
        url = f"http://127.0.0.1:{free_port()}"
        assert tracking_server_problem(url) == f"cannot reach MLflow at {url}: [Errno 111] Connection refused"

    def test_a_server_that_never_answers_times_out(self):
        with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            assert tracking_server_problem(url, timeout=0.2) == f"cannot reach MLflow at {url}: timed out"
