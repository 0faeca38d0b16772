"""`make demo` in a temporary folder: the real embedded stack, Airflow's REST API, then `make stop`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from mlops_airflow.embedded.stack import STACK_MARKER_ENV

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def our_processes(marker: str) -> list[int]:
    needle = f"{STACK_MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z" and needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_demo_retrains_and_stop_leaves_nothing(tmp_path):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_"))}
    env.update(
        MLOPS_STATE_DIR=str(state),
        MLOPS_AIRFLOW_PORT=str(free_port()),
        MLOPS_MLFLOW_PORT=str(free_port()),
        MLOPS_WORKER_LOG_PORT=str(free_port()),
        MLOPS_TRIGGER_LOG_PORT=str(free_port()),
    )
    command = [sys.executable, "-m", "mlops_airflow.embedded"]
    try:
        demo = subprocess.run([*command, "demo"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
        print(demo.stdout)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "retrain_churn run manual__" in demo.stdout
        assert ": SUCCESS" in demo.stdout
        assert "train_model                  success" in demo.stdout
        assert "is 'challenger'" in demo.stdout
        assert "(user admin, password " in demo.stdout
        assert our_processes(str(state)), "the stack should keep running after the demo"

        again = subprocess.run([*command, "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 2
    finally:
        stop = subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert stop.returncode == 0, stop.stderr
    assert our_processes(str(state)) == []
