"""mlops_airflow.embedded.watchdog: waits for a stack's owner to end, then stops what the stack left running."""

from __future__ import annotations

import subprocess
import sys

from mlops_airflow.embedded.owner import PID_FILE
from mlops_airflow.embedded.watchdog import main, watch


def short_lived_owner(seconds: float = 0.2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


class TestWatch:
    def test_without_a_stack_there_is_nothing_to_stop(self, tmp_path):
        owner = short_lived_owner()
        try:
            assert watch(owner.pid, tmp_path, poll=0.01) is False
            assert owner.poll() is not None, "watch returned while its owner still ran"
        finally:
            owner.kill()
            owner.wait()
        assert list(tmp_path.iterdir()) == []

    def test_an_owner_already_gone_returns_at_once(self, tmp_path):
        owner = short_lived_owner(0)
        owner.wait()
        assert watch(owner.pid, tmp_path, poll=60) is False


def test_main_removes_its_pid_file_when_the_owner_ends(tmp_path):
    owner = short_lived_owner(0)
    owner.wait()
    (tmp_path / PID_FILE).write_text(f"12345 {owner.pid}")
    assert main([str(owner.pid), str(tmp_path)]) == 0
    assert not (tmp_path / PID_FILE).exists()
