"""The production topology on one machine, for the distributed end-to-end test.

Airflow's components as separate processes: an API server, a scheduler, a DAG processor,
a triggerer and two Celery workers. Postgres (a database of its own) is the metadata
database and Redis the Celery broker, both the machine's. Each worker has its own working
folder and its own ``AIRFLOW_HOME`` (logs), so no task can read what another task left on
a worker's disk: tasks hand each other things through XCom, MLflow and the data store.

The serving backend is the local one; its state folder stands for the serving cluster's
API, which every worker reaches, so it is shared, as the data store and MLflow are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from mlops_airflow.embedded.config import StackConfig, inherited_env
from mlops_airflow.embedded.stack import EmbeddedStack, Service, _http_ok, port_in_use

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379"
WORKERS = ("worker1", "worker2")


DATABASE_PREFIX = "mlops_e2e_"


def _postgres_admin(statement: str) -> list[tuple]:
    """One statement on the machine's Postgres, outside a transaction (CREATE/DROP DATABASE need that); its rows."""
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def drop_orphaned_databases() -> list[str]:
    """Drop the databases of test runs whose process is gone (a run killed before its teardown): ``mlops_e2e_<pid>_<key>``."""
    from mlops_airflow.embedded.owner import process_alive

    dropped = []
    rows = _postgres_admin(
        f"SELECT datname FROM pg_database WHERE datname ~ '^{DATABASE_PREFIX}[0-9]+_[0-9a-f]+$' "
        "AND datname NOT IN (SELECT datname FROM pg_stat_activity WHERE datname IS NOT NULL)"  # nobody connected: not in use
    )
    for (name,) in rows:
        owner = int(name[len(DATABASE_PREFIX) :].split("_", 1)[0])
        if not process_alive(owner):
            _postgres_admin(f'DROP DATABASE IF EXISTS "{name}"')
            dropped.append(name)
    return dropped


def create_database(name: str) -> None:
    _postgres_admin(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DistributedStack(EmbeddedStack):
    """:class:`EmbeddedStack`'s lifecycle (start, health, ``down``), with the production topology's services."""

    def __init__(self, config: StackConfig, *, ports: dict[str, int], echo=print) -> None:
        super().__init__(config, echo=echo)
        self.ports = ports
        self.run_key = uuid.uuid4().hex[:10]
        # The owner's pid in the name: a later run drops the database of a run that was killed.
        self.database = f"{DATABASE_PREFIX}{os.getpid()}_{self.run_key}"
        self.queue = f"{DATABASE_PREFIX}{self.run_key}"

    def airflow_env(self) -> dict[str, str]:
        return {
            **super().airflow_env(),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{POSTGRES}/{self.database}",
            "AIRFLOW__CELERY__BROKER_URL": f"{REDIS}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{POSTGRES}/{self.database}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,  # this test's workers only, on a shared Redis
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.config.admin_password_file),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.ports["scheduler_health"]),
            # A worker that dies is noticed in seconds, not the default five minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        }

    def migrate(self) -> None:
        for name in drop_orphaned_databases():
            self.echo(f"dropped {name}: the test run that made it is gone")
        create_database(self.database)
        env = {**inherited_env(), **self.airflow_env(), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        self.config.airflow_home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([self._airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        self.admin_password()

    def worker(self, name: str) -> Service:
        folder = self.config.state_dir / name
        port = self.ports[name]
        env = {
            **self.airflow_env(),
            "AIRFLOW_HOME": str(folder / "airflow-home"),  # its own logs
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port),
            "TMPDIR": str(folder / "tmp"),
        }
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        command = [self._airflow, "celery", "worker", "--concurrency", "2", "--queues", self.queue, "--celery-hostname", f"{name}@%h"]
        return Service(name, command, env, port, lambda: port_in_use(self.config.host, port), 120.0, folder / "work")

    @property
    def _airflow(self) -> str:
        return str(Path(sys.executable).parent / "airflow")

    def services(self) -> list[Service]:
        mlflow = next(s for s in super().services() if s.name == "mlflow")
        env = self.airflow_env()
        home = self.config.airflow_home
        host = self.config.host
        scheduler = Service(
            "scheduler",
            [self._airflow, "scheduler"],
            env,
            self.ports["scheduler_health"],
            lambda: _http_ok(f"http://{host}:{self.ports['scheduler_health']}/health")[0],
            120.0,
            home,
        )
        processor = Service("dag-processor", [self._airflow, "dag-processor"], env, self.ports["dag_processor_dummy"], lambda: True, 30.0, home)
        triggerer = Service(
            "triggerer", [self._airflow, "triggerer"], env, self.config.trigger_log_port, lambda: port_in_use(host, self.config.trigger_log_port), 120.0, home
        )
        api = Service(
            "airflow", [self._airflow, "api-server", "--port", str(self.config.airflow_port)], env, self.config.airflow_port, self.airflow_healthy, 240.0, home
        )
        return [mlflow, scheduler, processor, triggerer, *(self.worker(name) for name in WORKERS), api]

    def service(self, name: str) -> Service:
        return next(s for s in self.services() if s.name == name)

    def restart(self, name: str) -> None:
        """Stop one service's process group, then start it again and wait until it is healthy."""
        from mlops_airflow.embedded.stack import StackState

        self._stop_group(name, StackState.load(self.state_path).services[name])
        self.start(name)

    def kill(self, name: str) -> None:
        """SIGKILL a service's whole process group: the machine it runs on died."""
        import os
        import signal

        from mlops_airflow.embedded.stack import StackState

        running = StackState.load(self.state_path).services[name]
        os.killpg(running.pgid, signal.SIGKILL)

    def start(self, name: str) -> None:
        from mlops_airflow.embedded.stack import StackState

        state = StackState.load(self.state_path)
        service = self.service(name)
        running = self._start(service)
        state.services[name] = running
        state.save(self.state_path)
        if not self._wait_healthy(service, running, timeout=service.start_timeout):
            raise RuntimeError(f"{name} did not start; see {running.log}")

    def teardown(self) -> None:
        self.down()
        drop_database(self.database)
