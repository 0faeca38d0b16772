"""The local serving backend's processes: each in its own process group, recorded by itself before it runs.

Every process the backend starts (Caddy's router and front, the blue and green model servers)
writes its group to ``<state dir>/pids/<model>-<name>.pid`` before it execs, and carries
``MLOPS_SERVING_PROCESS=<state dir>/<model>-<name>`` in its environment: a process a killed task
started is found and ended, and a recycled pid is never taken for ours.
:class:`ServingProcesses` is mixed into :class:`~mlops_airflow.serving.local.LocalServingBackend`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlops_airflow

PROCESS_ENV = "MLOPS_SERVING_PROCESS"


def http_request(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, bytes]:
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


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a group (Linux /proc; empty elsewhere)."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat_file.parent.name))
    return members


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


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def process_alive(pid: int | None) -> bool:
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


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServingProcesses:
    """Start, find and stop the named processes of one model's local serving (needs ``state_dir`` and ``model``)."""

    state_dir: Path
    model: str

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
        return pgid if f"{PROCESS_ENV}={self._identity(name)}".encode() in environ else None

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
        return child_env({**(env or {}), "PYTHONPATH": python_path, PROCESS_ENV: self._identity(name)})
