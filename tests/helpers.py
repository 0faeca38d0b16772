"""Constants and helpers shared by the tests (plain imports: tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parents[1]
CHURN_SPEC = REPO_ROOT / "include" / "models" / "churn.yaml"


# Ports handed out by free_port: a block of its own for every xdist worker, below the kernel's
# ephemeral range (32768-60999 on Linux), where port-0 binds of any process land. With port 0
# here, two workers could be handed the same free port, and one worker's model server then
# answered another's readiness checks.
_PORT_BLOCK_START, _PORT_BLOCK_SIZE = 20_000, 2_000
_next_port_offset: list[int] = []


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now, and that no other test process is handed."""
    import random

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    block = _PORT_BLOCK_START + (int(worker[2:]) % 6 if worker[2:].isdigit() else 0) * _PORT_BLOCK_SIZE
    if not _next_port_offset:  # a random start, so that two test sessions at once rarely meet
        _next_port_offset.append(random.randrange(_PORT_BLOCK_SIZE))
    for _ in range(_PORT_BLOCK_SIZE):
        port = block + _next_port_offset[0] % _PORT_BLOCK_SIZE
        _next_port_offset[0] += 1  # never the same port twice in one process
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {block}..{block + _PORT_BLOCK_SIZE - 1}")


# The window every test that trains uses: 21 days of small partitions ending here.
DATA_END = dt.date(2026, 3, 1)
DATA_DAYS = 21
ROWS_PER_DAY = 300


def task_states(dag_run) -> dict[str, str]:
    """``{task_id: state}`` of a finished dag.test() run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances(session=session)}


class FakeTaskInstance:
    """What our operators read from and write to ``context["ti"]``, for calling ``execute()`` outside Airflow.

    :param run_states: ``{run_id: state}`` that ``get_dagrun_state`` answers; an integer is an
        HTTP status the execution API answers with instead (a run not listed: 404), raised as
        the Task SDK raises it.
    """

    def __init__(
        self,
        xcoms: dict,
        run_id: str,
        try_number: int = 1,
        dag_id: str = "retrain_churn",
        task_id: str = "promote_champion",
        run_states: dict[str, str | int] | None = None,
    ) -> None:
        self.xcoms, self.run_id, self.try_number = xcoms, run_id, try_number
        self.dag_id, self.task_id = dag_id, task_id
        self.run_states = run_states or {}
        self.pushed: dict = {}

    def xcom_pull(self, task_ids):
        return self.xcoms.get(task_ids)

    def xcom_push(self, key, value):
        self.pushed[key] = value

    def get_dagrun_state(self, dag_id, run_id):
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse

        answer = self.run_states.get(run_id, 404)
        if isinstance(answer, int):
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": answer, "message": "Server error"}))
        return answer


def task_context(
    xcoms: dict | None = None,
    run_id: str = "manual__test",
    user: str | None = "alice",
    try_number: int = 1,
    *,
    dag_id: str = "retrain_churn",
    task_id: str = "promote_champion",
    params: dict | None = None,
    run_states: dict[str, str | int] | None = None,
) -> dict:
    """A minimal task context: ``ti`` with XComs, the ``dag_run``'s triggering user, and ``params``."""
    return {
        "ti": FakeTaskInstance(xcoms or {}, run_id, try_number, dag_id=dag_id, task_id=task_id, run_states=run_states),
        "dag_run": SimpleNamespace(triggering_user_name=user, run_id=run_id, dag_id=dag_id),
        "params": dict(params or {}),
    }


def churn_spec_raw() -> dict:
    """The demo spec (include/models/churn.yaml), parsed into plain data to change for a test."""
    import yaml

    return yaml.safe_load(CHURN_SPEC.read_text())


def write_spec(raw: dict, folder: Path, name: str = "churn.yaml") -> Path:
    """``raw`` written as a spec file in ``folder``; its path."""
    import yaml

    path = Path(folder) / name
    path.write_text(yaml.safe_dump(raw))
    return path


def quick_spec(raw: dict) -> dict:
    """``raw`` changed to release fast in dag.test(): no drain delay, a short smoke burst with a loose latency gate.

    The latency gate is loose because a busy 2-core machine answers a burst slowly (a 2 s gate
    failed at 2.38 s under the parallel suite); the golden rows and the error rate are still
    checked exactly, and the gate itself is tested with a fake server in tests/unit/operators.
    """
    raw["serving"].update(drain_seconds=0, ready_timeout_seconds=180)
    raw["serving"]["smoke"].update(burst_requests=10, max_p95_ms=30_000)
    return raw


@contextlib.contextmanager
def running_mlflow_server(folder: Path, *, app_name: str | None = None, env: dict[str, str] | None = None):
    """Start ``mlflow server`` on a free loopback port (SQLite + local artifacts under ``folder``); yield its URL.

    :param app_name: e.g. ``basic-auth`` (configure it through ``env``).
    """
    import subprocess
    import sys
    import time
    import urllib.request

    import pytest

    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{Path(folder) / 'server.db'}",
        "--artifacts-destination", str(Path(folder) / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        *(["--app-name", app_name] if app_name else []),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(process.pid, 9)
        pytest.fail("mlflow server did not answer /health within 90 s")
    try:
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


DRIFT_START = DATA_END - dt.timedelta(days=3)  # drifted days: the last three of the drift fixtures' data


def write_drift_spec(folder, data_root, **drift) -> str:
    """A copy of the churn spec reading ``<data_root>/events``, with ``drift`` settings overridden; its path."""
    raw = churn_spec_raw()
    raw["data"].update(uri=f"{data_root}/events", predictions_uri=f"{data_root}/predictions")
    raw["drift"].update(drift)
    return str(write_spec(raw, folder))


def write_drift_data(data_root, *, days: int = 10, rows_per_day: int = 600, drifted: bool = True) -> None:
    """``days`` days of churn data ending at DATA_END; with ``drifted``, its last three days shift."""
    from mlops_airflow.embedded.synthetic import DriftSettings, generate

    drift = DriftSettings(start=DRIFT_START, features=("monthly_charges", "contract"), magnitude=1.0) if drifted else None
    generate(f"{data_root}/events", DATA_END - dt.timedelta(days=days), DATA_END, rows_per_day=rows_per_day, seed=3, drift=drift)


def register_champion_with_reference(tracking_uri: str, *, rows: int = 3000, name: str = "churn") -> str:
    """A champion version whose training run carries a reference sample of undrifted data; its version."""
    import tempfile
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from mlops_airflow.embedded.synthetic import generate_day

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name) or client.get_experiment(client.create_experiment(name))
    run = client.create_run(experiment.experiment_id)
    reference = generate_day(DATA_END - dt.timedelta(days=30), rows=rows, seed=99)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features.parquet"
        reference.drop(columns=["churned"]).to_parquet(path, index=False)
        client.log_artifact(run.info.run_id, str(path), "reference")
    client.set_terminated(run.info.run_id)
    if client.search_registered_models(f"name = '{name}'") == []:
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def processes_with_env(entry: str) -> list[int]:
    """Live (not zombie) processes, other than this one, whose start-up environment holds ``entry`` (``KEY=value``)."""
    import os
    from pathlib import Path

    needle = entry.encode()
    found = []
    for folder in Path("/proc").iterdir():
        if folder.name.isdigit() and int(folder.name) != os.getpid():
            try:
                stat = (folder / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z" and needle in (folder / "environ").read_bytes().split(b"\0"):
                    found.append(int(folder.name))
            except (OSError, ValueError):
                continue
    return found


def partial_files(root) -> list[str]:
    """Files under ``root`` that look half-written: temporary names that were never renamed."""
    from pathlib import Path

    return [str(p) for p in Path(root).rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith(".tmp") or p.name.endswith(".partial"))]


def run_killed(work, delay: float) -> str:
    """Run ``work()`` in a forked process (what a task process is), SIGKILL it after ``delay`` seconds.

    Returns ``"killed"``, or ``"finished first"`` when it ended before the kill. A task process
    that raised before the kill fails the test: its traceback is printed by the child.
    """
    import signal
    import time
    import traceback

    pid = os.fork()
    if pid == 0:  # the task process
        _own_tqdm_lock()
        code = 0
        try:
            work()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            if os.waitstatus_to_exitcode(status) != 0:
                raise AssertionError(f"the task process failed on its own before the kill at {delay:.2f} s (its traceback is above)")
            return "finished first"
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "killed"


class KillPlan:
    """Where to kill a task: seeded random moments within its clean duration, until enough kills land.

    ``wanted`` kills must land while the task runs. A moment is drawn anywhere in the clean
    run's duration; when the task finished before it, the next moment is drawn below that
    one, so a kill lands soon even when the clean run (timed cold, or on a busier machine)
    was slower than the tries. The seed is the session's (``MLOPS_TEST_SEED``): each run
    kills at other moments, and a failure names its seed (the moments scale with measured
    durations, so a replay kills near, not exactly at, the same moments).
    """

    def __init__(self, name: str, wanted: int) -> None:
        import random

        from sampling import session_seed

        self.name, self.wanted = name, wanted
        self.rng = random.Random(f"{session_seed()}-{name}")
        self.outcomes = {"killed": 0, "finished first": 0}
        self._ceiling: float | None = None

    def moments(self, duration: float):
        """Delays in seconds, one per try, until ``wanted`` kills landed (:meth:`record` each outcome)."""
        self._ceiling = duration
        while self.outcomes["killed"] < self.wanted and sum(self.outcomes.values()) < 3 * self.wanted:
            self._last = max(0.02, self.rng.uniform(0.0, self._ceiling))
            yield self._last

    def record(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if outcome == "finished first":
            self._ceiling = self._last

    def describe(self) -> str:
        from sampling import replay_hint

        return f"{self.name}: {self.wanted} kills wanted, outcomes {self.outcomes}; {replay_hint()}"


def kill_plan(name: str, *, full: int, sampled: int) -> KillPlan:
    """A plan of ``sampled`` kills for ``name``; ``full`` of them under ``MLOPS_TEST_FULL=1``."""
    from sampling import full as every_case

    return KillPlan(name, full if every_case() else min(sampled, full))


def _own_tqdm_lock() -> None:
    """Give a forked child its own tqdm lock.

    tqdm's lock is a ``multiprocessing.RLock``: a semaphore shared with the parent across
    ``fork``. A child killed while it holds it (MLflow shows a progress bar for every
    download) would leave the parent blocked forever on its next download. A real task
    process starts fresh and has its own.
    """
    import sys

    if "tqdm" not in sys.modules:
        return
    from tqdm.std import TqdmDefaultWriteLock, tqdm

    if hasattr(TqdmDefaultWriteLock, "mp_lock"):
        del TqdmDefaultWriteLock.mp_lock
    tqdm.set_lock(TqdmDefaultWriteLock())


_MLFLOW_TEMPLATE: Path | None = None


def fresh_mlflow_db(path: Path, artifact_root: Path | None = None) -> str:
    """A new MLflow SQLite store at ``path``, copied from one this process migrated once; its URI.

    Migrating a store takes a second or more; a copy takes milliseconds. The copy is the store
    MLflow itself makes (default experiment 0 included), with experiment 0's artifacts under
    ``artifact_root`` (default: ``mlruns`` beside the file), as if it had been created there.
    """
    import shutil
    import sqlite3
    import tempfile

    global _MLFLOW_TEMPLATE
    if _MLFLOW_TEMPLATE is None:
        from mlflow.tracking import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="mlflow-template-")) / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # runs the migrations
        _MLFLOW_TEMPLATE = template
    path = Path(path)
    shutil.copyfile(_MLFLOW_TEMPLATE, path)
    root = Path(artifact_root) if artifact_root is not None else path.parent / "mlruns"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(root / "0"),))
    return f"sqlite:///{path}"


def alias_version(client, model: str, alias: str) -> str | None:
    """The version ``alias`` points at, or ``None`` when it is not set; any other error (a dead server) is raised."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(err):
            return None
        raise


def mark_promoted(client, model: str, version: str | int, *, dag_run: str = "retrain_churn/manual__test", secret: str = "") -> None:
    """Write the decision record a promotion leaves on a version (what lets it be deployed and score), as tags, sealed with ``secret``."""
    from mlops_airflow.constants import TAG_DECISION_SEAL
    from mlops_airflow.core.promotion import decision_seal

    tags = {
        "mlops.decision": "promoted",
        "mlops.decision.reasons": "all gates passed",
        "mlops.decision.dag_run": dag_run,
        "mlops.decision.by": "airflow (gates)",
        "mlops.decision.at": "2026-03-01T00:00:00+00:00",
        "mlops.decision.forced": "false",
    }
    tags[TAG_DECISION_SEAL] = decision_seal(model, str(version), tags, secret)
    for key, value in tags.items():
        client.set_model_version_tag(model, str(version), key, value)


def delete_dag_runs(dag_id: str, *run_ids: str) -> None:
    """Delete runs from this session's Airflow database (their task instances go with them).

    For tests that must not depend on what an earlier test of the session left there, e.g. a
    retrain run for the same drift window, with which a trigger would skip.
    """
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:  # ON DELETE CASCADE takes the task instances
        session.execute(delete(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids)))


def listening_beyond_loopback(pids: list[int]) -> list[str]:
    """TCP sockets that ``pids`` listen on at an address other than loopback, as "pid command address:port" (Linux /proc)."""
    import ipaddress

    def address(hex_address: str) -> tuple[ipaddress._BaseAddress, int]:
        host, port = hex_address.split(":")
        raw = bytes.fromhex(host)
        # /proc/net/tcp* prints each 32-bit word of the address in host (little-endian) order.
        ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        return ipaddress.ip_address(ordered), int(port, 16)

    listening: dict[str, str] = {}  # socket inode -> address
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    ip, port = address(fields[1])
                    mapped = getattr(ip, "ipv4_mapped", None)
                    if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
                        listening[fields[9]] = f"{ip}:{port}"
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in listening:
                        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
                        found.append(f"{pid} {command} {listening[target[8:-1]]}")
    return found


def asset_events(name: str, after: int = 0) -> list[tuple[dict, str, str | None, int]]:
    """The events of the asset ``name`` with an id above ``after``: (extra, source task, partition key, id), oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == name, AssetEvent.id > after)
            .order_by(AssetEvent.id)
            .all()
        )
        return [(dict(row.extra or {}), row.source_task_id, row.partition_key, row.id) for row in rows]


def last_asset_event_id() -> int:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import func

    with create_session() as session:
        return session.query(func.max(AssetEvent.id)).scalar() or 0
