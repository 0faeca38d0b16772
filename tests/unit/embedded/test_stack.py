"""The process manager, exercised with small stand-in services instead of Airflow and MLflow."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port

from mlops_airflow.embedded.stack import EmbeddedStack, RunningService, Service, StackConfig, StackError, StackState, _http_ok, group_members

# A service that starts a child of its own (as Airflow standalone does) and answers HTTP.
SERVER = """
import http.server, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


class FakeStack(EmbeddedStack):
    def __init__(self, config: StackConfig, script: str = SERVER) -> None:
        super().__init__(config, echo=lambda _: None)
        self.script = script

    def services(self) -> list[Service]:
        port = self.config.airflow_port
        return [
            Service(
                name="web",
                command=[sys.executable, "-c", self.script, str(port)],
                env={},
                port=port,
                is_healthy=lambda: _http_ok(f"http://127.0.0.1:{port}/")[0],
                start_timeout=20,
                cwd=self.config.state_dir,
            )
        ]


@pytest.fixture
def config(tmp_path) -> StackConfig:
    return StackConfig(repo_root=tmp_path, state_dir=tmp_path / "state", airflow_port=free_port(), mlflow_port=free_port())


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
class TestEmbeddedStack:
    def test_up_reuse_down(self, config):
        stack = FakeStack(config)
        try:
            stack.up()
            assert stack.status() == {"web": "healthy"}
            running = StackState.load(stack.state_path).services["web"]
            members = group_members(running.pgid, config.marker)
            assert len(members) == 2  # the service and the child it started

            stack.up()  # idempotent: the healthy service is reused, not started twice
            assert StackState.load(stack.state_path).services["web"].pid == running.pid
        finally:
            stopped = stack.down(timeout=10)
        assert stopped == ["web"]
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in members) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in members)
        assert stack.status() == {"web": "stopped"}
        assert stack.down() == []

    def test_every_service_runs_with_mlflows_pickle_loaders_off(self, config, monkeypatch):
        """Airflow's workers (and the tasks they start) inherit it: no MLflow loader there reads pickle."""
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
        stack = FakeStack(config)
        try:
            stack.up()
            running = StackState.load(stack.state_path).services["web"]
            environ = Path(f"/proc/{running.pid}/environ").read_bytes().split(b"\0")
        finally:
            stack.down(timeout=10)
        assert b"MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false" in environ

    def test_down_leaves_processes_that_are_not_ours(self, config):
        stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        try:
            config.state_dir.mkdir(parents=True)
            fake = RunningService(name="web", pid=stranger.pid, pgid=stranger.pid, log="x", port=config.airflow_port)
            StackState({"web": fake}).save(config.state_dir / "stack.json")
            assert FakeStack(config).down(timeout=2) == []
            assert stranger.poll() is None
        finally:
            os.killpg(stranger.pid, signal.SIGKILL)
            stranger.wait()

    def test_port_taken_by_someone_else(self, config):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", config.airflow_port))
            sock.listen()
            with pytest.raises(StackError, match=f"port {config.airflow_port} .* taken by a program this stack did not start"):
                FakeStack(config).up()

    def test_a_service_not_yet_showing_the_marker_is_waited_for(self, config, monkeypatch):
        """Between fork and exec a new process carries the parent's environment, not the stack's marker
        (seen under load as "exited during start-up" with an empty log)."""
        from mlops_airflow.embedded import stack as stack_module

        real, calls = stack_module.group_members, []

        def not_exec_yet(pgid, marker):
            calls.append(pgid)
            return [] if len(calls) == 1 else real(pgid, marker)

        monkeypatch.setattr(stack_module, "group_members", not_exec_yet)
        stack = FakeStack(config)
        try:
            stack.up()
            assert calls, "the start-up check looked for the group while the service was not up yet"
            assert stack.status() == {"web": "healthy"}
        finally:
            monkeypatch.setattr(stack_module, "group_members", real)
            stack.down(timeout=10)

    def test_service_that_dies_points_at_its_log(self, config):
        stack = FakeStack(config, script="import sys; print('boom: bad config'); sys.exit(3)")
        with pytest.raises(StackError, match=r"web exited during start-up; see .*web\.log:\nboom: bad config"):
            stack.up()
        stack.down()


def test_airflow_env_points_at_this_checkout(config):
    env = EmbeddedStack(config).airflow_env()
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(config.repo_root / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(config.repo_root / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{config.airflow_port}/execution/"
    # Secrets are generated once per stack, kept private, and stable across calls.
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == EmbeddedStack(config).airflow_env()["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert (config.state_dir / "secrets" / "jwt_secret").stat().st_mode & 0o077 == 0


def test_mlflow_runs_without_its_job_runner(config):
    (mlflow,) = [s for s in EmbeddedStack(config).services() if s.name == "mlflow"]
    assert mlflow.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "--backend-store-uri" in mlflow.command


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_stack_owned_by_a_process_ends_when_that_process_ends(config, monkeypatch, how):
    from mlops_airflow.embedded.owner import OWNER_ENV

    # SIGINT's default action back: a process started from an xdist worker inherits it ignored.
    owner = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); print('ready', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout.readline() == "ready\n"
    monkeypatch.setenv(OWNER_ENV, str(owner.pid))
    stack = FakeStack(config)
    try:
        stack.up()
        members = group_members(StackState.load(stack.state_path).services["web"].pgid, config.marker)
        assert members
        owner.send_signal(how)
        owner.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (any(alive(pid) for pid in members) or stack.state_path.exists()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in members), f"the stack outlived its owner ({how.name})"
        assert not stack.state_path.exists(), "the watchdog stops the stack as `make stop` does, state included"
    finally:
        owner.kill()
        stack.down(timeout=5)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_the_watchdog_leaves_with_a_stack_stopped_first(config, monkeypatch):
    from mlops_airflow.embedded.owner import OWNER_ENV, PID_FILE

    monkeypatch.setenv(OWNER_ENV, str(os.getpid()))
    stack = FakeStack(config)
    try:
        stack.up()
        first = (config.state_dir / PID_FILE).read_text()
        stack.up()  # a second `up` keeps the one watchdog
        assert (config.state_dir / PID_FILE).read_text() == first
        watchdog, owner = map(int, first.split())
        assert (alive(watchdog), owner) == (True, os.getpid())
    finally:
        stack.down(timeout=5)
    deadline = time.monotonic() + 10
    while alive(watchdog) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(watchdog), "`down` ends the watchdog of the stack it stopped"
    assert not (config.state_dir / PID_FILE).exists()


def test_standalone_components_start_without_log_servers(config, tmp_path, monkeypatch):
    """Airflow binds its log servers to every interface; the stack's scheduler and triggerer start none."""
    fake_bin = tmp_path / "venv-bin"
    fake_bin.mkdir()
    real = fake_bin / "airflow"
    real.write_text('#!/bin/sh\necho "$@"\n')
    real.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake_bin / "python"))
    stack = EmbeddedStack(config, echo=lambda _: None)
    stack.write_components_shim()
    (airflow,) = [s for s in stack.services() if s.name == "airflow"]
    shim = airflow.path_first[0] / "airflow"

    def started(*args: str) -> str:
        return subprocess.run([shim, *args], capture_output=True, text=True, check=True).stdout.strip()

    assert started("scheduler") == "scheduler --skip-serve-logs"
    assert started("triggerer", "--capacity", "10") == "triggerer --capacity 10 --skip-serve-logs"
    assert started("api-server") == "api-server"
    assert started("dag-processor") == "dag-processor"
