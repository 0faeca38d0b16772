"""Loopback HTTP stand-ins for the services our code calls: a JSON handler base, a server, a webhook.

Standard library only. A stand-in is a :class:`JsonHandler` subclass (one ``do_<METHOD>``
per verb, answering with ``reply``) served by :class:`FakeServer`, which hands the handler
its owner as a class attribute.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that reads and answers JSON, and logs nothing."""

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def raw_body(self) -> bytes:
        """The request body (read once: a second call returns ``b""``)."""
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def body(self) -> Any:
        """The request body parsed as JSON; ``None`` when there is none."""
        raw = self.raw_body()
        return json.loads(raw) if raw else None

    def reply(self, status: int, body: Any = None, content_type: str = "application/json") -> None:
        """Answer ``status`` with ``body``: bytes as they are, anything else as JSON (``None``: ``{}``)."""
        payload = body if isinstance(body, bytes) else json.dumps({} if body is None else body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped waiting (a timeout the test provoked)
            pass


class FakeServer:
    """``handler`` served on a free loopback port by a daemon thread, from construction until :meth:`close`.

    :param attributes: set on a subclass of ``handler``, so that its methods reach their owner
        (for example ``api=self``).
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], **attributes: Any) -> None:
        if attributes:
            handler = type(handler.__name__, (handler,), attributes)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        # A short poll interval: close() waits for the serving loop to notice, up to one interval.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _WebhookHandler(JsonHandler):
    webhook: FakeWebhook

    def do_POST(self) -> None:
        webhook = self.webhook
        webhook.requests.append({"path": self.path, "headers": dict(self.headers), "body": self.body()})
        if webhook.mode == "hang":
            webhook.release.wait(60)
            return
        self.reply(200 if webhook.mode == "ok" else 500, b"")


class FakeWebhook(FakeServer):
    """A webhook that records every POST (``requests``: path, headers, parsed body) and answers 200, answers 500, or hangs.

    :param mode: ``ok``, ``500`` or ``hang`` (until :meth:`close`).
    """

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        super().__init__(_WebhookHandler, webhook=self)

    def close(self) -> None:
        self.release.set()
        super().close()
