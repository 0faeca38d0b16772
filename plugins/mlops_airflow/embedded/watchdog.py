"""Ends a stack when the process that owns it is gone.

``python -m mlops_airflow.embedded.watchdog <owner pid> <state dir>``. A stack started with
``MLOPS_STACK_OWNER_PID`` set (the test suite sets it to the test process) gets one of these:
it polls the owner every second and, once the owner has ended (normally, or by SIGINT,
SIGTERM or SIGKILL), stops every process group the stack recorded and the serving processes,
as ``make stop`` would. Stopping the stack first ends its watchdog too. ``make demo`` and
``make up`` leave the variable unset: their stack is meant to outlive the command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlops_airflow.embedded.stack import STACK_MARKER_ENV, STATE_FILE, EmbeddedStack, StackConfig, inherited_env

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


def watch(owner: int, state_dir: Path, *, poll: float = 1.0) -> bool:
    """Wait while ``owner`` runs; then stop the stack if it still runs. Whether it stopped it.

    ``down`` ends the watchdog of a stack it stops, so a later ``up`` starts a fresh one.
    """
    while process_alive(owner):
        time.sleep(poll)
    if not (state_dir / STATE_FILE).exists():
        return False
    stopped = EmbeddedStack(StackConfig(repo_root=Path.cwd(), state_dir=state_dir), echo=print).down(timeout=20)
    print(f"owner {owner} ended; stopped {', '.join(stopped) or 'nothing'}", flush=True)
    return True


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
    if not raw.isdigit():
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


def main(argv: list[str]) -> int:
    owner, state_dir = int(argv[0]), Path(argv[1])
    watch(owner, state_dir)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
