"""Ends a stack when the process that owns it is gone.

``python -m mlops_airflow.embedded.watchdog <owner pid> <state dir>``. A stack started with
``MLOPS_STACK_OWNER_PID`` set (the test suite sets it to the test process) gets one of these:
it polls the owner every second and, once the owner has ended (normally, or by SIGINT,
SIGTERM or SIGKILL), stops every process group the stack recorded and the serving processes,
as ``make stop`` would. Stopping the stack first ends its watchdog too. ``make demo`` and
``make up`` leave the variable unset: their stack is meant to outlive the command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mlops_airflow.embedded.config import STATE_FILE, StackConfig
from mlops_airflow.embedded.owner import PID_FILE, process_alive
from mlops_airflow.embedded.stack import EmbeddedStack


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


def main(argv: list[str]) -> int:
    owner, state_dir = int(argv[0]), Path(argv[1])
    watch(owner, state_dir)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
