"""The whole loop on the production topology: Postgres, Redis, the CeleryExecutor and two workers.

The story is `make demo`'s (first champion, drift, retrain, new champion live, backfill),
run against separate Airflow components (see ``distributed_stack``). During the first
retrain two faults are injected: the Celery worker running ``train_model`` is killed
(SIGKILL of its process group, as if its machine died) and started again, and the
scheduler is restarted while the run goes on. The story must still complete, with one
model version per retrain run and both aliases where the promotion put them.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from distributed_stack import WORKERS, DistributedStack
from helpers import REPO_ROOT, free_port, processes_with_env
from second_model import a_second_model_beside_churn
from story_checks import E2E_SETTINGS, STORY_DAGS, the_story_happened

from mlops_airflow.embedded.stack import STACK_MARKER_ENV, StackConfig
from mlops_airflow.hooks.airflow_api import AirflowApiError
from mlops_airflow.serving.local_ports import LocalPorts

pytestmark = pytest.mark.e2e


def services_reachable() -> bool:
    for port in (5432, 6379):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return False
    return True


class FaultInjector(threading.Thread):
    """Kills the worker that runs the first ``train_model``, starts it again, then restarts the scheduler."""

    def __init__(self, stack: DistributedStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.log: list[str] = []
        self.in_flight: set[tuple[str, str, str]] = set()  # (dag, run, task) of every task instance running when a fault struck
        self.error: BaseException | None = None
        self.done = threading.Event()

    def client(self):
        from mlops_airflow.hooks.airflow_api import AirflowClient

        password = self.stack.config.admin_password()
        return AirflowClient(self.stack.config.airflow_url, "admin", password) if password else None

    def running_tasks(self) -> set[tuple[str, str, str]]:
        client = self.client()
        found = set()
        for dag_id in STORY_DAGS:
            for run in client.dag_runs(dag_id):
                tasks = client.task_instances(dag_id, run["dag_run_id"])
                found |= {(dag_id, run["dag_run_id"], t["task_id"]) for t in tasks if t["state"] in ("running", "queued", "scheduled")}
        return found

    def worker_of(self, pid: int) -> str | None:
        """The worker whose process tree holds ``pid`` (the task's process)."""
        from mlops_airflow.embedded.stack import StackState

        services = StackState.load(self.stack.state_path).services
        leaders = {services[name].pid: name for name in WORKERS}
        while pid > 1:
            if pid in leaders:
                return leaders[pid]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        return None

    def run(self) -> None:
        try:
            self.inject()
        except BaseException as err:  # reported by the test
            self.error = err
        finally:
            self.done.set()

    def inject(self) -> None:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            running = []
            try:
                client = self.client()
                for run in client.dag_runs("retrain_churn") if client else []:
                    tasks = client.task_instances("retrain_churn", run["dag_run_id"])
                    running += [t for t in tasks if t["task_id"] == "train_model" and t["state"] == "running"]
            except (OSError, AirflowApiError):  # the API server is not up yet
                time.sleep(1)
                continue
            worker = next((self.worker_of(t["pid"]) for t in running if t.get("pid")), None)
            if worker:
                time.sleep(1)  # into the training
                self.in_flight |= self.running_tasks()
                self.stack.kill(worker)
                self.log.append(f"killed {worker} while train_model ran (try {running[0]['try_number']})")
                self.stack.start(worker)
                self.log.append(f"started {worker} again")
                time.sleep(5)
                self.in_flight |= self.running_tasks()
                self.stack.restart("scheduler")
                self.log.append("restarted the scheduler")
                return
            time.sleep(0.5)
        raise TimeoutError("no train_model ran on a worker within 900 s")


@pytest.mark.timeout(1200)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.skipif(not services_reachable(), reason="needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
def test_the_loop_survives_a_dead_worker_and_a_scheduler_restart_on_celery(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from mlops_airflow.embedded.demo import DemoStory

    state = tmp_path / "state"
    config = StackConfig(
        repo_root=REPO_ROOT,
        state_dir=state,
        airflow_port=free_port(),
        mlflow_port=free_port(),
        worker_log_port=free_port(),
        trigger_log_port=free_port(),
        statsd_port=free_port(),
        serving_ports=LocalPorts(live=free_port(), blue=free_port(), green=free_port()),
        database="sqlite",  # MLflow's store; Airflow's metadata database is the machine's PostgreSQL (distributed_stack)
    )
    ports = {"scheduler_health": free_port(), "dag_processor_dummy": free_port(), **{name: free_port() for name in WORKERS}}
    for name in [n for n in os.environ if n.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_"))]:
        monkeypatch.delenv(name)
    for name, value in E2E_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLOPS_STACK_OWNER_PID", str(os.getpid()))  # the stack ends with this test process, however it ends
    stack = DistributedStack(config, ports=ports)
    faults = FaultInjector(stack)
    try:
        stack.migrate()
        faults.start()
        story = DemoStory(config, echo=print)
        result = story.run(stack)
        story.summary(config.admin_password() or "?")
        faults.done.wait(timeout=60)
        print("\n".join(faults.log))
        assert faults.error is None, faults.error
        assert len(faults.log) == 3, faults.log
        assert result.ok, result

        found = the_story_happened(config, monkeypatch, faults=faults.in_flight)
        client = found["client"]
        # The check of first tries sees the killed one.
        assert any(a.task_id == "train_model" and a.run_id == found["first"]["dag_run_id"] for a in found["failed_tries"]), found["failed_tries"]
        first_train = next(t for t in client.task_instances("retrain_churn", found["first"]["dag_run_id"]) if t["task_id"] == "train_model")
        assert first_train["try_number"] >= 2, "the killed try must have been retried"
        # One model version per retrain run, whatever the faults did.
        registry = MlflowClient(config.mlflow_url, config.mlflow_url)
        versions = registry.search_model_versions("name = 'churn'")
        runs = [registry.get_run(v.run_id).data.tags.get("mlops.idempotency_key") for v in versions]
        assert len(runs) == len(set(runs)) == 2, runs
        assert (found["previous"]["version"], found["champion"]["version"]) == ("1", "2")
        # A second model beside churn on the same workers: defaults of the trigger form, approvals, side-by-side serving.
        a_second_model_beside_churn(config, state / "logs" / "scheduler.log", monkeypatch)
        # Both workers ran tasks, each in its own folders.
        for name in WORKERS:
            logs = list((state / name / "airflow-home" / "logs").rglob("*.log"))
            assert logs, f"{name} ran no task"
    finally:
        stack.teardown()
    assert processes_with_env(f"{STACK_MARKER_ENV}={config.marker}") == []
