"""mlops_airflow.embedded.owner: whether a process runs, and the owner a stack's watchdog is started for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_airflow.embedded.config import StackConfig
from mlops_airflow.embedded.owner import OWNER_ENV, PID_FILE, ensure_watchdog, process_alive, stop_watchdog


@pytest.fixture
def config(tmp_path) -> StackConfig:
    state = tmp_path / "state"
    state.mkdir()
    return StackConfig(repo_root=tmp_path, state_dir=state)


def started_nothing(config: StackConfig) -> bool:
    """No watchdog was started: it would have a log folder and a pid file."""
    return not config.log_dir.exists() and not (config.state_dir / PID_FILE).exists()


class TestProcessAlive:
    def test_this_process_runs(self):
        assert process_alive(os.getpid()) is True

    @pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="a zombie is told apart in /proc")
    def test_an_ended_child_not_yet_reaped_does_not_run(self):
        child = subprocess.Popen([sys.executable, "-c", ""])
        try:
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended; left a zombie
            assert process_alive(child.pid) is False
        finally:
            child.wait()

    def test_a_reaped_child_does_not_run(self):
        child = subprocess.Popen([sys.executable, "-c", ""])
        child.wait()
        assert process_alive(child.pid) is False


class TestEnsureWatchdog:
    @pytest.mark.parametrize("environ", [pytest.param({}, id="unset"), pytest.param({OWNER_ENV: ""}, id="empty"), pytest.param({OWNER_ENV: "  "}, id="blank")])
    def test_no_owner_no_watchdog(self, config, environ):
        assert ensure_watchdog(config, environ) is None
        assert started_nothing(config)

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param("abc", id="word"),
            pytest.param("-1", id="negative"),
            pytest.param("12a", id="trailing-letter"),
            pytest.param("1.5", id="decimal"),
            pytest.param("0x10", id="hex"),
            pytest.param("1 2", id="two-numbers"),
        ],
    )
    def test_a_non_numeric_owner_is_refused(self, config, raw):
        with pytest.raises(ValueError, match=f"^{re.escape(f'{OWNER_ENV}={raw!r} is not a process id')}$"):
            ensure_watchdog(config, {OWNER_ENV: raw})
        assert started_nothing(config)

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param("\u00b2", id="superscript-two"),
            pytest.param("\u0661\u0662", id="arabic-indic-digits"),
            pytest.param("\uff11\uff12", id="fullwidth-digits"),
        ],
    )
    def test_non_ascii_digits_are_refused(self, config, monkeypatch, raw):
        """str.isdigit() accepts them; the watchdog's int() does not (or reads another number)."""

        def no_watchdog(*args, **kwargs):
            raise AssertionError(f"a watchdog was started: {args}")

        monkeypatch.setattr(subprocess, "Popen", no_watchdog)
        with pytest.raises(ValueError, match=f"^{re.escape(f'{OWNER_ENV}={raw!r} is not a process id')}$"):
            ensure_watchdog(config, {OWNER_ENV: raw})
        assert started_nothing(config)

    def test_reads_the_process_environment_by_default(self, config, monkeypatch):
        monkeypatch.setenv(OWNER_ENV, "owner")
        with pytest.raises(ValueError, match="is not a process id"):
            ensure_watchdog(config)
        assert started_nothing(config)


class TestStopWatchdog:
    def test_a_recorded_process_that_is_no_watchdog_is_left_running(self, config):
        """A stale pid file whose pid now belongs to another program: that program is not signalled."""
        stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            (config.state_dir / PID_FILE).write_text(f"{stranger.pid} {os.getpid()}")
            stop_watchdog(config)
            with pytest.raises(subprocess.TimeoutExpired):  # a SIGTERM would end it within this time
                stranger.wait(timeout=0.3)
            assert not (config.state_dir / PID_FILE).exists()
        finally:
            stranger.kill()
            stranger.wait()

    def test_an_unreadable_pid_file_is_removed(self, config):
        (config.state_dir / PID_FILE).write_text("not pids")
        stop_watchdog(config)
        assert not (config.state_dir / PID_FILE).exists()
