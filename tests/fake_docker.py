"""A small fake Docker Engine API: containers by name, images, health checks, every request recorded.

Standard library only; docker-py's ``APIClient`` talks to it over TCP on loopback. A
started container reports ``starting`` health for ``healthy_after`` inspects and then
``healthy`` (or ``unhealthy`` when its name is in ``unhealthy``). Creating a container
from an image it does not have answers 404, as the Engine does, until the image is pulled.
"""

from __future__ import annotations

import re
import threading
import uuid
from urllib.parse import parse_qs, urlparse

from fake_http import FakeServer, JsonHandler

API_VERSION = "1.45"


class FakeEngine:
    def __init__(self, images: set[str] | None = None, healthy_after: int = 2) -> None:
        self.images = set(images or ())
        self.healthy_after = healthy_after
        self.unhealthy: set[str] = set()
        self.containers: dict[str, dict] = {}  # by name
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def find(self, ref: str) -> dict | None:
        return self.containers.get(ref) or next((c for c in self.containers.values() if c["Id"] == ref), None)

    def calls(self, *methods: str) -> list[tuple[str, str]]:
        """(method, path) of every request but pings and version checks, in order."""
        return [(r["method"], r["path"]) for r in self.requests if r["path"] not in ("/_ping", "/version") and (not methods or r["method"] in methods)]


class _Handler(JsonHandler):
    engine: FakeEngine

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        path = re.sub(r"^/v[0-9.]+", "", url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self.body()
        engine = self.engine
        with engine.lock:
            engine.requests.append({"method": method, "path": path, "query": query, "body": body})
            self._route(engine, method, path, query, body)

    def _route(self, engine: FakeEngine, method: str, path: str, query: dict, body) -> None:
        if path == "/_ping":
            return self.reply(200, b"OK", "text/plain")
        if path == "/version":
            return self.reply(200, {"ApiVersion": API_VERSION, "Version": "27.0.0", "MinAPIVersion": "1.24", "Os": "linux"})
        if method == "POST" and path == "/images/create":
            engine.images.add(f"{query['fromImage']}:{query.get('tag', 'latest')}")
            return self.reply(200, b'{"status":"Downloaded newer image"}\n')
        if method == "POST" and path == "/containers/create":
            name = query["name"]
            if body["Image"] not in engine.images:
                return self.reply(404, {"message": f"No such image: {body['Image']}"})
            if name in engine.containers:
                return self.reply(409, {"message": f'Conflict. The container name "/{name}" is already in use'})
            engine.containers[name] = {
                "Id": uuid.uuid4().hex,
                "Name": f"/{name}",
                "Config": {**body, "Labels": body.get("Labels") or {}},
                "HostConfig": body.get("HostConfig") or {},
                "State": {"Status": "created", "Running": False, "ExitCode": 0},
                "inspects": 0,
            }
            return self.reply(201, {"Id": engine.containers[name]["Id"], "Warnings": []})
        match = re.fullmatch(r"/containers/([^/]+)(?:/(json|start|stop|logs))?", path)
        if not match:
            return self.reply(404, {"message": f"page not found: {method} {path}"})
        container = engine.find(match.group(1))
        if container is None:
            return self.reply(404, {"message": f"No such container: {match.group(1)}"})
        action = match.group(2)
        name = container["Name"].lstrip("/")
        if method == "GET" and action == "json":
            state = container["State"]
            if state["Running"]:
                container["inspects"] += 1
                if name in engine.unhealthy:
                    state["Health"] = {"Status": "unhealthy"}
                else:
                    state["Health"] = {"Status": "healthy" if container["inspects"] > engine.healthy_after else "starting"}
            return self.reply(200, {k: v for k, v in container.items() if k != "inspects"})
        if method == "POST" and action == "start":
            container["State"] = {"Status": "running", "Running": True, "ExitCode": 0, "Health": {"Status": "starting"}}
            return self.reply(204, b"")
        if method == "POST" and action == "stop":
            container["State"] = {"Status": "exited", "Running": False, "ExitCode": 0}
            return self.reply(204, b"")
        if method == "GET" and action == "logs":
            return self.reply(200, f"{name}: model server log\n".encode(), "text/plain")
        if method == "DELETE" and action is None:
            del engine.containers[name]
            return self.reply(204, b"")
        return self.reply(405, {"message": f"{method} {path} is not faked"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")


class FakeDockerServer(FakeServer):
    """``engine`` served on a loopback port; ``url`` is what docker-py's ``base_url`` takes."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        super().__init__(_Handler, engine=engine)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"
