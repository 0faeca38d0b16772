"""The owner of a stack started by a test: its watchdog process is started and ended here.

A stack started with ``MLOPS_STACK_OWNER_PID`` set is watched by
``python -m mlops_airflow.embedded.watchdog`` (:mod:`mlops_airflow.embedded.watchdog`), which
stops it when that process ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from mlops_airflow.embedded.config import STACK_MARKER_ENV, StackConfig, inherited_env

OWNER_ENV = "MLOPS_STACK_OWNER_PID"
PID_FILE = "watchdog.pid"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat[stat.rindex(")") + 2] != "Z"


def _recorded(config: StackConfig) -> tuple[int, int] | None:
    """``(watchdog pid, owner pid)`` of this stack's running watchdog, if one runs."""
    try:
        pid, owner = (int(part) for part in (config.state_dir / PID_FILE).read_text().split())
        if process_alive(pid) and b"mlops_airflow.embedded.watchdog" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid, owner
    except (OSError, ValueError):
        pass
    return None


def stop_watchdog(config: StackConfig) -> None:
    """End this stack's watchdog (``down`` calls this: the stack it watched is gone)."""
    recorded = _recorded(config)
    if recorded and recorded[0] != os.getpid():  # the watchdog's own `down` leaves it to end by itself
        with contextlib.suppress(ProcessLookupError):
            os.kill(recorded[0], signal.SIGTERM)
    (config.state_dir / PID_FILE).unlink(missing_ok=True)


def ensure_watchdog(config: StackConfig, environ: dict[str, str] | None = None) -> int | None:
    """Start the stack's watchdog when ``MLOPS_STACK_OWNER_PID`` names an owner; its pid (``None``: no owner)."""
    environ = os.environ if environ is None else environ
    raw = environ.get(OWNER_ENV, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):  # isdigit alone accepts "²", which the watchdog's int() refuses
        raise ValueError(f"{OWNER_ENV}={raw!r} is not a process id")
    recorded = _recorded(config)
    if recorded and recorded[1] == int(raw):
        return recorded[0]
    if recorded:  # watching another owner: this one is the stack's owner now
        stop_watchdog(config)
    env = {k: v for k, v in inherited_env().items() if k != STACK_MARKER_ENV}  # `down` never counts it as the stack's
    config.log_dir.mkdir(parents=True, exist_ok=True)
    with open(config.log_dir / "watchdog.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops_airflow.embedded.watchdog", raw, str(config.state_dir)],
            cwd=config.repo_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to the owner's process group does not reach it
        )
    (config.state_dir / PID_FILE).write_text(f"{process.pid} {raw}")
    return process.pid
