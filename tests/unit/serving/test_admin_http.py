"""admin_request: one HTTP request to a Caddy admin API over TCP or a Unix socket; any answer returned, no answer an OSError."""

from __future__ import annotations

import json
import socket
import socketserver
import tempfile
import threading
from pathlib import Path

import pytest
from fake_http import FakeServer, JsonHandler
from helpers import free_port

from mlops_airflow.serving.admin_http import admin_request


class _AdminHandler(JsonHandler):
    """Records each request; answers with the owner's ``status`` and ``body`` (``garbage``: not HTTP at all)."""

    owner: object

    def _answer(self) -> None:
        owner = self.owner
        owner.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": self.raw_body()})
        if owner.garbage:
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            return
        self.reply(owner.status, owner.body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer


class FakeAdmin(FakeServer):
    def __init__(self, status: int = 200, body: bytes = b'{"ok": true}', garbage: bool = False) -> None:
        self.status, self.body, self.garbage = status, body, garbage
        self.requests: list[dict] = []
        super().__init__(_AdminHandler, owner=self)


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class FakeUnixAdmin:
    """The same stand-in on a Unix socket, as the compose stack's router listens."""

    def __init__(self, path: Path, status: int = 200, body: bytes = b'{"ok": true}') -> None:
        self.status, self.body, self.garbage = status, body, False
        self.requests: list[dict] = []
        handler = type("_UnixAdminHandler", (_AdminHandler,), {"owner": self, "address_string": lambda self: "unix"})
        self.server = _UnixHTTPServer(str(path), handler)
        self.url = f"unix:{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def short_dir():
    """A folder with a short path: a Unix socket's path may not exceed 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="admin-") as folder:
        yield Path(folder)


class TestOverTcp:
    def test_get_returns_status_and_body_and_sends_the_host_caddy_checks(self):
        with FakeAdmin(body=b'{"apps": {}}') as admin:
            assert admin_request(admin.url, "GET", "/config/") == (200, b'{"apps": {}}')
        (request,) = admin.requests
        assert (request["method"], request["path"], request["body"]) == ("GET", "/config/", b"")
        assert request["headers"]["Host"] == f"127.0.0.1:{admin.port}"

    def test_a_body_is_sent_as_json(self):
        upstreams = [{"dial": "churn-green:8080"}]
        with FakeAdmin() as admin:
            admin_request(admin.url, "PATCH", "/id/churn-live/upstreams", body=upstreams)
        (request,) = admin.requests
        assert request["headers"]["Content-Type"] == "application/json"
        assert json.loads(request["body"]) == upstreams

    @pytest.mark.parametrize("status", [400, 404, 500])
    def test_an_error_status_is_an_answer_not_an_exception(self, status):
        with FakeAdmin(status=status, body=b'{"error": "unknown object ID"}') as admin:
            assert admin_request(admin.url, "DELETE", "/id/churn-live") == (status, b'{"error": "unknown object ID"}')

    def test_nobody_listening_is_an_oserror(self):
        with pytest.raises(ConnectionRefusedError):
            admin_request(f"http://127.0.0.1:{free_port()}", "GET", "/config/", timeout=2)

    def test_an_answer_that_is_not_http_is_an_oserror_naming_the_request(self):
        with FakeAdmin(garbage=True) as admin, pytest.raises(OSError, match=rf"^GET /config/ at {admin.url}: "):
            admin_request(admin.url, "GET", "/config/", timeout=5)

    def test_no_answer_times_out(self):
        with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            with pytest.raises(TimeoutError):
                admin_request(f"http://127.0.0.1:{listener.getsockname()[1]}", "GET", "/config/", timeout=0.2)


class TestOverUnixSocket:
    def test_request_and_answer(self, short_dir):
        admin = FakeUnixAdmin(short_dir / "admin.sock", status=201, body=b"created")
        try:
            assert admin_request(admin.url, "POST", "/config/apps/http/servers/churn", body={"listen": [":8000"]}) == (201, b"created")
        finally:
            admin.close()
        (request,) = admin.requests
        assert (request["method"], request["path"]) == ("POST", "/config/apps/http/servers/churn")
        assert json.loads(request["body"]) == {"listen": [":8000"]}
        assert request["headers"]["Host"] == "localhost"

    def test_a_missing_socket_is_an_oserror(self, short_dir):
        with pytest.raises(FileNotFoundError):
            admin_request(f"unix:{short_dir / 'gone.sock'}", "GET", "/config/", timeout=2)
