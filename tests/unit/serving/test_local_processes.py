"""The local backend's processes: each in its own group, recording itself before it runs, found again by its marker, stopped by group."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_http import FakeServer, JsonHandler
from helpers import free_port

from mlops_airflow.serving.local_processes import PROCESS_ENV, ServingProcesses, group_alive, http_request, log_tail, port_open, process_alive, stop_group


def eventually(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Processes(ServingProcesses):
    def __init__(self, state_dir: Path, model: str = "churn") -> None:
        self.state_dir, self.model = state_dir, model


@pytest.fixture
def processes(tmp_path):
    """A ServingProcesses whose spawned groups are all ended after the test."""
    owner = Processes(tmp_path / "serving")
    spawned: list[subprocess.Popen] = []
    real_spawn = owner._spawn

    def spawn(*args, **kwargs):
        spawned.append(real_spawn(*args, **kwargs))
        return spawned[-1]

    owner._spawn = spawn
    yield owner
    for process in spawned:
        if group_alive(process.pid):
            stop_group(process.pid, timeout=5)
        process.wait(timeout=5)


@pytest.fixture
def group():
    """A process group of its own: a shell and a sleep under it."""
    started = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & wait"], start_new_session=True)
    yield started
    if group_alive(started.pid):
        stop_group(started.pid, timeout=5)
    started.wait(timeout=5)


class _Answers(JsonHandler):
    def do_GET(self) -> None:
        self.reply(200 if self.path == "/ping" else 404, b"pong" if self.path == "/ping" else b"no such page")

    def do_POST(self) -> None:
        self.reply(200, {"echo": self.body(), "type": self.headers["Content-Type"]})


class TestHttpRequest:
    @pytest.mark.parametrize(
        ("method", "path", "body", "answer"),
        [
            pytest.param("GET", "/ping", None, (200, b"pong"), id="ok"),
            pytest.param("GET", "/missing", None, (404, b"no such page"), id="an-error-status-is-an-answer"),
            pytest.param("POST", "/", {"a": 1}, (200, b'{"echo": {"a": 1}, "type": "application/json"}'), id="json-body"),
        ],
    )
    def test_answers(self, method, path, body, answer):
        with FakeServer(_Answers) as server:
            assert http_request(method, f"{server.url}{path}", body, timeout=5) == answer

    def test_no_answer_is_status_zero(self):
        assert http_request("GET", f"http://127.0.0.1:{free_port()}/ping", timeout=2) == (0, b"")


class TestPortOpen:
    def test_a_listening_port_is_open(self):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            assert port_open("127.0.0.1", listener.getsockname()[1])

    def test_a_free_port_is_not(self):
        assert not port_open("127.0.0.1", free_port())


class TestProcessAlive:
    @pytest.mark.parametrize("pid", [pytest.param(None, id="none"), pytest.param(0, id="zero")])
    def test_no_pid_is_not_alive(self, pid):
        assert not process_alive(pid)

    def test_this_process_is_alive(self):
        assert process_alive(os.getpid())

    def test_an_exited_process_is_not_even_before_it_is_reaped(self):
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        try:
            assert eventually(lambda: not process_alive(child.pid))  # a zombie until waited for
        finally:
            child.wait(timeout=5)
        assert not process_alive(child.pid)


class TestGroups:
    def test_stop_group_ends_every_process_of_the_group(self, group):
        assert group_alive(group.pid)
        stop_group(group.pid, timeout=5)
        assert not group_alive(group.pid)

    def test_a_group_that_ignores_sigterm_is_killed_after_the_timeout(self):
        stubborn = subprocess.Popen(["/bin/sh", "-c", "trap '' TERM; sleep 30 & echo ready; wait"], start_new_session=True, stdout=subprocess.PIPE)
        try:
            assert stubborn.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
            started = time.monotonic()
            stop_group(stubborn.pid, timeout=0.3)
            assert time.monotonic() - started >= 0.3
            assert eventually(lambda: not group_alive(stubborn.pid))
        finally:
            stop_group(stubborn.pid, timeout=0)
            stubborn.wait(timeout=5)
            stubborn.stdout.close()

    def test_stopping_a_group_that_is_gone_is_harmless(self, group):
        stop_group(group.pid, timeout=5)
        stop_group(group.pid, timeout=5)
        assert not group_alive(group.pid)


class TestLogTail:
    def test_the_last_lines(self, tmp_path):
        log = tmp_path / "server.log"
        log.write_text("".join(f"line {i}\n" for i in range(30)))
        assert log_tail(log, lines=3) == "line 27\nline 28\nline 29"

    def test_no_log(self, tmp_path):
        assert log_tail(tmp_path / "missing.log") == "(no log)"


class TestServingProcesses:
    def test_a_spawned_process_records_its_group_before_it_runs(self, processes):
        process = processes._spawn("blue", ["/bin/sh", "-c", 'cat "$0" && exec sleep 30', str(processes._pid_file("blue"))])
        # The command reads the pid file as its first act: the file was there before it ran.
        assert eventually(lambda: log_tail(processes._log_path("blue")) == str(process.pid))
        assert processes._pid_file("blue").read_text().strip() == str(process.pid)
        assert os.getpgid(process.pid) == process.pid

    def test_a_spawned_process_carries_its_marker_and_is_found_by_it(self, processes):
        process = processes._spawn("caddy", ["sleep", "30"])
        assert eventually(lambda: processes._spawned_group("caddy") == process.pid)
        marker = f"{PROCESS_ENV}={processes.state_dir / 'churn'}-caddy".encode()
        assert marker in Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert processes._spawned_group("caddy-front") is None  # another name, another process

    def test_the_process_log_collects_output_and_errors(self, processes):
        process = processes._spawn("green", ["/bin/sh", "-c", "echo out; echo err >&2"])
        process.wait(timeout=5)
        assert log_tail(processes._log_path("green")) == "out\nerr"

    @pytest.mark.parametrize(
        "content",
        [pytest.param(None, id="no-pid-file"), pytest.param("not a pid", id="garbage"), pytest.param("{self}", id="a-process-without-our-marker")],
    )
    def test_a_pid_file_that_names_no_process_of_ours_is_ignored(self, processes, content):
        if content is not None:
            processes._pid_file("blue").parent.mkdir(parents=True, exist_ok=True)
            processes._pid_file("blue").write_text(content.format(self=os.getpid()))
        assert processes._spawned_group("blue") is None

    def test_a_recycled_pid_is_not_taken_for_ours(self, processes, group):
        """The pid file names a live group that some other start put there: not ours to stop."""
        processes._pid_file("blue").parent.mkdir(parents=True, exist_ok=True)
        processes._pid_file("blue").write_text(str(group.pid))
        assert processes._spawned_group("blue") is None
        assert processes._stop_named("blue", None) is False
        assert group_alive(group.pid)

    def test_stop_named_ends_the_recorded_and_the_spawned_group(self, processes, group):
        process = processes._spawn("blue", ["sleep", "30"])
        assert eventually(lambda: processes._spawned_group("blue") == process.pid)
        assert processes._stop_named("blue", group.pid) is True
        assert not group_alive(process.pid)
        assert not group_alive(group.pid)
        assert processes._stop_named("blue", group.pid) is False  # nothing left to stop

    def test_process_env_is_an_allow_list_plus_what_is_given_and_the_marker(self, processes, monkeypatch):
        monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "canary")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "worker-canary")
        monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
        env = processes.process_env("green", {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_TRACKING_PASSWORD": "given"})
        assert "AIRFLOW__CORE__FERNET_KEY" not in env
        assert (env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_PASSWORD"]) == ("http://mlflow:5000", "given")
        assert env[PROCESS_ENV] == f"{processes.state_dir / 'churn'}-green"
        package_root, rest = env["PYTHONPATH"].split(os.pathsep)
        assert (Path(package_root) / "mlops_airflow" / "__init__.py").is_file()
        assert rest == "/somewhere/else"
