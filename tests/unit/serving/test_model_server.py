"""The model server's command line: its argv, the environment defaults, and the refusal path (loading stubbed, no server started).

The refusal of a real pickled version is tested in tests/unit/core/test_model_loading.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_airflow.core.model_loading import PICKLE_ENV, UnsafeModelError
from mlops_airflow.serving import model_server
from mlops_airflow.serving.model_server import EXIT_REFUSED, Capacity, Supervisor, main, parse_args, server_command

HGB = "hist_gradient_boosting"
CAPACITY_ENV = (model_server.WORKERS_ENV, model_server.MAX_PENDING_ENV, model_server.MAX_BATCH_ROWS_ENV, model_server.MAX_WAIT_ENV)


@pytest.fixture
def refusing_loader(monkeypatch):
    """``load`` replaced by one that notes what it was asked, and how, then refuses (so no server starts)."""
    asked: dict = {}

    def refuse(model_uri, estimator_kind, folder):
        asked.update(model_uri=model_uri, estimator_kind=estimator_kind, folder=Path(folder), folder_existed=Path(folder).is_dir())
        asked["pickle"] = os.environ.get(PICKLE_ENV)
        raise UnsafeModelError(f"{model_uri}: serialization_format 'cloudpickle'; only 'skops' is loaded")

    monkeypatch.setattr(model_server, "load", refuse)
    # main() switches pickle off in this (the test's) process: give monkeypatch a value to put back.
    monkeypatch.setenv(PICKLE_ENV, "true")
    for name in (model_server.MODEL_URI_ENV, model_server.ESTIMATOR_KIND_ENV, *CAPACITY_ENV):
        monkeypatch.delenv(name, raising=False)
    for name in model_server.SINGLE_THREADED_ENV:  # main() sets them where unset: give monkeypatch a value to put back
        monkeypatch.setenv(name, "1")
    return asked


class TestServerCommand:
    def test_with_every_value(self):
        assert server_command("/venv/bin/python", model_uri="models:/churn/3", estimator_kind=HGB, host="0.0.0.0", port=8080) == [
            "/venv/bin/python", "-m", "mlops_airflow.serving.model_server", "--host", "0.0.0.0", "--port", "8080",
            "--model-uri", "models:/churn/3", "--estimator-kind", HGB,
        ]  # fmt: skip

    def test_none_leaves_a_value_to_the_environment(self):
        command = server_command("python", model_uri=None, estimator_kind=None, host="127.0.0.1", port=9000)
        assert command == ["python", "-m", "mlops_airflow.serving.model_server", "--host", "127.0.0.1", "--port", "9000"]

    def test_main_reads_back_what_the_command_says(self, refusing_loader):
        command = server_command("python", model_uri="models:/churn/3", estimator_kind=HGB, host="127.0.0.1", port=9000)
        assert main(command[3:]) == EXIT_REFUSED
        assert (refusing_loader["model_uri"], refusing_loader["estimator_kind"]) == ("models:/churn/3", HGB)


class TestMain:
    @pytest.mark.parametrize(
        ("argv", "environ", "expected"),
        [
            pytest.param(["--model-uri", "models:/churn/3", "--estimator-kind", HGB], {}, ("models:/churn/3", HGB), id="arguments"),
            pytest.param([], {"MODEL_URI": "models:/churn/4", "MODEL_ESTIMATOR_KIND": HGB}, ("models:/churn/4", HGB), id="environment"),
            pytest.param(
                ["--model-uri", "models:/churn/5"],
                {"MODEL_URI": "models:/churn/4", "MODEL_ESTIMATOR_KIND": "logistic_regression"},
                ("models:/churn/5", "logistic_regression"),
                id="arguments-win",
            ),
        ],
    )
    def test_the_model_uri_and_kind(self, refusing_loader, monkeypatch, argv, environ, expected):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        assert main(argv) == EXIT_REFUSED
        assert (refusing_loader["model_uri"], refusing_loader["estimator_kind"]) == expected

    @pytest.mark.parametrize(
        ("argv", "environ"),
        [
            pytest.param([], {}, id="neither"),
            pytest.param(["--model-uri", "models:/churn/3"], {}, id="no-kind"),
            pytest.param(["--estimator-kind", HGB], {"MODEL_URI": ""}, id="empty-uri-variable"),
        ],
    )
    def test_both_are_required(self, refusing_loader, monkeypatch, capsys, argv, environ):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "--model-uri and --estimator-kind (or MODEL_URI and MODEL_ESTIMATOR_KIND) are required" in capsys.readouterr().err
        assert refusing_loader == {}  # nothing was downloaded

    def test_a_port_that_is_not_a_number(self, refusing_loader, capsys):
        with pytest.raises(SystemExit):
            main(["--model-uri", "models:/churn/3", "--estimator-kind", HGB, "--port", "http"])
        assert "argument --port: invalid int value: 'http'" in capsys.readouterr().err

    def test_a_refused_version_exits_refused_with_the_reason(self, refusing_loader, capsys):
        assert main(["--model-uri", "models:/churn/3", "--estimator-kind", HGB]) == EXIT_REFUSED
        assert capsys.readouterr().err == "refusing to serve models:/churn/3: serialization_format 'cloudpickle'; only 'skops' is loaded\n"

    def test_the_version_is_loaded_with_pickle_off_into_a_folder_removed_afterwards(self, refusing_loader):
        main(["--model-uri", "models:/churn/3", "--estimator-kind", HGB])
        assert refusing_loader["pickle"] == "false"
        assert refusing_loader["folder_existed"] is True
        assert not refusing_loader["folder"].exists()


class TestCapacity:
    def test_the_command_carries_it_and_the_server_reads_it_back(self, refusing_loader):
        capacity = Capacity(workers=3, max_pending=16, max_batch_rows=512, max_wait_seconds=0.25)
        command = server_command("python", model_uri="models:/churn/3", estimator_kind=HGB, host="127.0.0.1", port=9000, capacity=capacity)
        assert parse_args(command[3:]).capacity == capacity

    def test_the_environment_sets_what_the_arguments_leave_out(self, refusing_loader, monkeypatch):
        monkeypatch.setenv(model_server.WORKERS_ENV, "5")
        monkeypatch.setenv(model_server.MAX_WAIT_ENV, "0.5")
        args = parse_args(["--model-uri", "m", "--estimator-kind", HGB, "--max-pending", "8"])
        assert args.capacity == Capacity(workers=5, max_pending=8, max_batch_rows=model_server.DEFAULT_MAX_BATCH_ROWS, max_wait_seconds=0.5)

    def test_workers_default_to_the_cpus_this_process_may_use(self, refusing_loader, monkeypatch):
        monkeypatch.setattr(model_server.os, "sched_getaffinity", lambda pid: {0, 1, 2})
        assert parse_args(["--model-uri", "m", "--estimator-kind", HGB]).capacity.workers == 3

    @pytest.mark.parametrize(
        ("name", "value", "message"), [("MLOPS_SERVING_WORKERS", "two", "is not a whole number"), ("MLOPS_SERVING_MAX_WAIT_SECONDS", "0", "must be above 0")]
    )
    def test_a_bad_environment_value_is_named(self, refusing_loader, monkeypatch, name, value, message):
        monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit, match=f"{name}='{value}' {message}"):
            parse_args(["--model-uri", "m", "--estimator-kind", HGB])

    @pytest.mark.parametrize(("argv", "environ"), [(["--workers", "0"], {}), ([], {"MLOPS_SERVING_WORKERS": "0"})], ids=["argument", "environment"])
    def test_zero_workers_means_one_per_cpu_everywhere(self, refusing_loader, monkeypatch, argv, environ):
        monkeypatch.setattr(model_server.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        assert parse_args(["--model-uri", "m", "--estimator-kind", HGB, *argv]).capacity.workers == 4
        assert Capacity(workers=0).workers is None

    def test_a_container_gets_a_fixed_number_of_workers_and_the_same_settings_as_variables(self):
        assert Capacity(workers=None, max_pending=8).for_container() == Capacity(workers=model_server.CONTAINER_WORKERS, max_pending=8)
        assert Capacity(workers=3).for_container().workers == 3
        assert Capacity(workers=3, max_wait_seconds=0.5).environment() == {
            "MLOPS_SERVING_WORKERS": "3",
            "MLOPS_SERVING_MAX_PENDING": str(model_server.DEFAULT_MAX_PENDING),
            "MLOPS_SERVING_MAX_BATCH_ROWS": str(model_server.DEFAULT_MAX_BATCH_ROWS),
            "MLOPS_SERVING_MAX_WAIT_SECONDS": "0.5",
        }

    def test_a_negative_argument_is_refused(self, refusing_loader, capsys):
        with pytest.raises(SystemExit):
            parse_args(["--model-uri", "m", "--estimator-kind", HGB, "--workers", "-1"])
        assert "capacity must be positive" in capsys.readouterr().err


class TestSupervisor:
    def test_a_worker_that_dies_is_started_again(self):
        import signal
        import time

        supervisor = Supervisor(2, lambda: time.sleep(60), min_uptime=0.0, backoff=0.0, grace=5.0)
        try:
            for _ in range(2):
                supervisor._fork()
            victim = sorted(supervisor.children)[0]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while supervisor.restarts == 0 and time.monotonic() < deadline:
                supervisor._reap_and_replace()
                time.sleep(0.02)
            assert supervisor.restarts == 1
            assert victim not in supervisor.children
            assert len(supervisor.children) == 2
            for pid in supervisor.children:
                os.kill(pid, 0)  # alive
        finally:
            supervisor.stopping = True
            survivors = list(supervisor.children)
            supervisor._end_children()
        for pid in survivors:
            with pytest.raises(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaped by _end_children

    def test_stopping_ends_every_worker(self):
        import time

        supervisor = Supervisor(1, lambda: time.sleep(60), grace=5.0)
        supervisor._fork()
        (pid,) = supervisor.children
        supervisor._stop()
        supervisor._end_children()
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_workers_that_keep_dying_at_start_end_the_server_with_a_failure(capsys):
    supervisor = Supervisor(2, lambda: os._exit(7), min_uptime=30.0, backoff=0.0, max_quick_deaths=3)
    assert supervisor.run() == 1
    assert supervisor.children == {}
    assert "3 workers in a row died at start: giving up" in capsys.readouterr().err
