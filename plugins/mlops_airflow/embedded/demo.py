"""``make demo``: the whole loop on the embedded stack, unattended, narrated.

1. Generate clean data up to three days ago; the first ``retrain_<model>`` run trains,
   evaluates, promotes and releases the first champion (blue-green, smoke test, switch).
2. Score two rows through the live URL, as a client would.
3. Inject drift: the last three days arrive with shifted features and a changed label
   relationship.
4. ``drift_monitor_<model>`` (its scheduled run, once unpaused) detects the drift and
   triggers ``retrain_<model>``; the new champion goes live; the retrain's last task
   backfills ``batch_score_<model>`` over the drifted days, which are re-scored by it.
5. A summary: versions, decisions, drift statistics, metrics received, and the timings,
   split into the tasks' own time and Airflow's (scheduling, queueing, task start).

Over 400 lines because it is one narrated script, step after step, with its own printing.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops_airflow.constants import (
    BATCH_SCORE_DAG_PREFIX,
    CHAMPION_ALIAS,
    DRIFT_MONITOR_DAG_PREFIX,
    RETRAIN_DAG_PREFIX,
    TAG_DECISION,
    TAG_DECISION_REASONS,
)
from mlops_airflow.embedded.stack import EmbeddedStack, StackConfig, StackError
from mlops_airflow.hooks.airflow_api import AirflowClient

DEMO_DAYS = 42
DEMO_ROWS_PER_DAY = 2000
DRIFT_DAYS = 3  # the newest days arrive drifted
DRIFTED_FEATURES = ("monthly_charges", "support_calls", "contract")
RUN_TIMEOUT = 900.0
ONE_DAY = dt.timedelta(days=1)


def stack_spec(config: StackConfig, model: str):
    """The model's spec as the stack's tasks read it (the stack's spec copies, its data root)."""
    import os

    from mlops_airflow.specs import find_spec

    os.environ["MLOPS_DATA_ROOT"] = str(config.data_root)
    os.environ["MLOPS_SPECS_DIR"] = str(config.specs_dir)
    ports = config.serving_ports  # the default ports of a spec that sets none, as the stack's Airflow has them
    os.environ.update(MLOPS_SERVING_LIVE_PORT=str(ports.live), MLOPS_SERVING_BLUE_PORT=str(ports.blue), MLOPS_SERVING_GREEN_PORT=str(ports.green))
    return find_spec(config.specs_dir, model)


def ensure_demo_data(
    config: StackConfig, model: str, start: dt.date, end: dt.date, *, drift_from: dt.date | None = None, echo: Callable[[str], None] = print
) -> str:
    """Write the partitions of ``[start, end)`` that are missing; from ``drift_from`` on they are drifted. Deterministic per day."""
    from mlops_airflow.core.partitions import days_between, list_partition_files, write_partition
    from mlops_airflow.embedded.synthetic import DriftSettings, generate_day

    spec = stack_spec(config, model)
    drift = DriftSettings(start=drift_from, features=DRIFTED_FEATURES) if drift_from else None
    missing = [d for d in days_between(start, end) if not list_partition_files(spec.data.uri, d)]
    if missing:
        import pyarrow as pa

        kind = "drifted " if drift else ""
        echo(f"data: writing {len(missing)} {kind}daily partitions ({missing[0]}..{missing[-1]}) of {DEMO_ROWS_PER_DAY} rows under {spec.data.uri}")
        for day in missing:
            frame = generate_day(day, rows=DEMO_ROWS_PER_DAY, drift=drift)
            write_partition(pa.Table.from_pandas(frame, preserve_index=False), spec.data.uri, day)
    else:
        echo(f"data: {start}..{end - ONE_DAY} already present under {spec.data.uri}")
    return spec.data.uri


def registry_alias(mlflow_url: str, model: str, alias: str) -> dict | None:
    query = urllib.parse.urlencode({"name": model, "alias": alias})
    try:
        with urllib.request.urlopen(f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?{query}", timeout=10) as response:  # noqa: S310
            return json.loads(response.read())["model_version"]
    except (OSError, ValueError, KeyError):
        return None


def version_tags(version: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in version.get("tags", [])}


def live_prediction(config: StackConfig, model: str, day: dt.date) -> tuple[str | None, str | None, int, float, Any]:
    """Score two rows of ``day`` through the live URL, as a client would: (colour, version, status, ms, answer)."""
    from mlops_airflow.core.features import prepare_features
    from mlops_airflow.core.partitions import read_window
    from mlops_airflow.serving.factory import local_serving_backend
    from mlops_airflow.serving.smoke import payload, post

    spec = stack_spec(config, model)
    backend = local_serving_backend(spec, state_dir=config.serving_dir)
    status = backend.status()
    if status.live is None:
        return None, None, 0, 0.0, None
    rows = prepare_features(read_window(spec.data.uri, day, day + ONE_DAY).frame.head(2), spec)
    code, latency, answer = post(backend.live_url(), payload(rows), timeout=10)
    return str(status.live), status.live_version, code, latency, answer


def _parse_time(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def busy_seconds(tasks: list[dict], start: float, end: float) -> float:
    """How long at least one of ``tasks`` was running within ``[start, end]`` (parallel tasks count once)."""
    intervals = sorted(
        (max(s, start), min(e, end))
        for s, e in ((_parse_time(t.get("start_date")), _parse_time(t.get("end_date"))) for t in tasks)
        if s is not None and e is not None and min(e, end) > max(s, start)
    )
    busy, covered_until = 0.0, start
    for left, right in intervals:
        left = max(left, covered_until)
        if right > left:
            busy += right - left
            covered_until = right
    return busy


@dataclass
class LoopStep:
    """One DAG run on the way from drift to the new champion: its wall time and its tasks' busy time."""

    label: str
    wall: float
    busy: float


def loop_step(client: AirflowClient, label: str, dag_id: str, run_id: str, start: float, end: float) -> LoopStep:
    """The run's share of ``[start, end]``: from its queueing (or ``start``) to its end (or ``end``)."""
    run = client.get_run(dag_id, run_id)
    run_start = max(start, _parse_time(run.get("queued_at")) or start)
    run_end = min(end, _parse_time(run.get("end_date")) or end)
    return LoopStep(label, run_end - run_start, busy_seconds(client.task_instances(dag_id, run_id), run_start, run_end))


class StatsdCollector:
    """The demo listens where Airflow sends statsd (UDP), and counts our metrics by name."""

    def __init__(self, host: str, port: int) -> None:
        self.names: dict[str, int] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            self.sock = None
            return
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def listening(self) -> bool:
        return self.sock is not None

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except OSError:
                continue
            for line in data.decode(errors="replace").splitlines():
                name = line.split(":", 1)[0]
                if ".mlops." in f".{name}":
                    name = name[name.index("mlops.") :]
                    self.names[name] = self.names.get(name, 0) + 1

    def close(self) -> None:
        if self.sock is not None:
            self._stop.set()
            self._thread.join(timeout=2)
            self.sock.close()


@dataclass
class DemoResult:
    ok: bool = False
    first_champion: str | None = None
    new_champion: str | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)
    loop_seconds: float | None = None  # drift injected -> new champion live
    loop_busy: float | None = None  # of which at least one task was running
    loop_steps: list[LoopStep] = field(default_factory=list)
    backfill_days: list[str] = field(default_factory=list)
    metrics: dict[str, int] = field(default_factory=dict)


class DemoStory:
    """The story, step by step, against a running stack; each step narrates what it saw."""

    def __init__(self, config: StackConfig, model: str = "churn", *, echo: Callable[[str], None] = print, today: dt.date | None = None) -> None:
        self.config = config
        self.model = model
        self.echo = echo
        self.today = today or dt.datetime.now(tz=dt.UTC).date()
        self.drift_start = self.today - dt.timedelta(days=DRIFT_DAYS)
        self.result = DemoResult()
        self.retrain = f"{RETRAIN_DAG_PREFIX}{model}"
        self.monitor = f"{DRIFT_MONITOR_DAG_PREFIX}{model}"
        self.batch_score = f"{BATCH_SCORE_DAG_PREFIX}{model}"
        self.client: AirflowClient | None = None
        self.monitor_run: str | None = None
        self._phase_started = time.monotonic()

    def phase(self, name: str) -> None:
        now = time.monotonic()
        self.result.phases.append((name, now - self._phase_started))
        self._phase_started = now

    def section(self, title: str) -> None:
        self.echo("")
        self.echo(f"== {title}")

    # -- the story ---------------------------------------------------------------------------------

    def run(self, stack: EmbeddedStack) -> DemoResult:
        collector = StatsdCollector(self.config.host, self.config.statsd_port)
        try:
            self.section("1. The embedded stack")
            stack.up()
            self.phase("start the stack")
            password = self.config.admin_password()
            if password is None:
                raise StackError(f"Airflow has not written the admin password to {self.config.admin_password_file}")
            self.client = AirflowClient(self.config.airflow_url, "admin", password)
            ensure_demo_data(self.config, self.model, self.today - dt.timedelta(days=DEMO_DAYS), self.drift_start, echo=self.echo)
            for dag_id in (self.retrain, self.monitor, self.batch_score):
                self.client.wait_for_dag(dag_id)
            self.phase("generate data, parse the DAGs")

            self.section(f"2. {self.retrain}: the first champion")
            first = self.first_champion()
            self.phase("first retrain and release")
            if not first:
                return self.result
            self.section("3. Live predictions")
            self.show_live(self.drift_start - ONE_DAY)

            self.section(f"4. Drift arrives: {self.drift_start}..{self.today - ONE_DAY} ({', '.join(DRIFTED_FEATURES)} shift)")
            drift_injected = time.time()
            ensure_demo_data(self.config, self.model, self.drift_start, self.today, drift_from=self.drift_start, echo=self.echo)
            retrain_run = self.drift_monitor_triggers_retrain()
            self.phase("drift monitor")
            if retrain_run is None:
                return self.result
            # Daily scoring starts now: its run scores yesterday with the champion of the moment.
            self.client.set_paused(self.batch_score, False)
            self.echo(f"airflow: unpaused {self.batch_score}: its daily run scores {self.today - ONE_DAY} with v{self.result.first_champion} meanwhile")
            self.section(f"5. {self.retrain} run {retrain_run} (started by drift)")
            released = self.drift_retrain(retrain_run, drift_injected)
            self.phase("drift retrain and release")
            self.show_live(self.today - ONE_DAY)
            self.section(f"6. {self.batch_score}: the drifted days re-scored by a backfill")
            backfilled = self.backfill_rescored()
            self.phase("backfill of the drifted days")
            self.result.ok = released and backfilled
            return self.result
        finally:
            time.sleep(1 if collector.listening else 0)  # the last packets
            self.result.metrics = dict(collector.names)
            collector.close()

    def first_champion(self) -> bool:
        client = self.client
        champion = registry_alias(self.config.mlflow_url, self.model, CHAMPION_ALIAS)
        if champion:
            self.echo(f"model: {self.model} v{champion['version']} is already {CHAMPION_ALIAS!r}; not training a first one")
            self.result.first_champion = str(champion["version"])
            return True
        client.set_paused(self.retrain, False)
        window_end = self.drift_start.isoformat()
        run_id = client.trigger(self.retrain, conf={"window_end": window_end, "reason": "make demo: the first champion"})["dag_run_id"]
        self.echo(f"airflow: triggered {self.retrain} run {run_id} (window ending {window_end}); waiting for it")
        finished = client.wait_for_run(self.retrain, run_id, timeout=RUN_TIMEOUT)
        self.print_run(self.retrain, run_id, finished["state"])
        champion = registry_alias(self.config.mlflow_url, self.model, CHAMPION_ALIAS)
        if finished["state"] != "success" or champion is None:
            self.echo(f"the first retrain did not produce a {CHAMPION_ALIAS!r}; see the Airflow UI")
            return False
        self.result.first_champion = str(champion["version"])
        self.echo_decision(champion)
        return True

    def drift_monitor_triggers_retrain(self) -> str | None:
        client = self.client
        known = {r["dag_run_id"] for r in client.dag_runs(self.monitor)}
        client.set_paused(self.monitor, False)
        self.echo(f"airflow: unpaused {self.monitor}; waiting for its scheduled run")
        run_id = self.wait_for_new_run(self.monitor, known, timeout=90)
        if run_id is None:  # the scheduler did not create one in time: ask by hand, for the same window
            run_id = client.trigger(self.monitor, conf={"window_end": self.today.isoformat()})["dag_run_id"]
            self.echo(f"airflow: no scheduled run yet; triggered {run_id}")
        self.monitor_run = run_id
        finished = client.wait_for_run(self.monitor, run_id, timeout=RUN_TIMEOUT)
        self.print_run(self.monitor, run_id, finished["state"])
        summary = client.xcom(self.monitor, run_id, "detect_drift")
        gate = client.xcom(self.monitor, run_id, "decide_retrain")
        if summary:
            self.echo_drift(summary)
        if not gate:
            self.echo("drift: no retrain was triggered (no drift, or the cooldown held it); see the run's log")
            return None
        self.echo(f"drift: triggered {self.retrain} run {gate['run_id']}: {gate['conf']['reason']}")
        return gate["run_id"]

    def drift_retrain(self, run_id: str, drift_injected: float) -> bool:
        client = self.client
        finished = client.wait_for_run(self.retrain, run_id, timeout=RUN_TIMEOUT)
        self.print_run(self.retrain, run_id, finished["state"])
        champion = registry_alias(self.config.mlflow_url, self.model, CHAMPION_ALIAS)
        if champion:
            self.echo_decision(champion)
        states = {t["task_id"]: t["state"] for t in client.task_instances(self.retrain, run_id)}
        if states.get("verify_live") != "success" or champion is None or str(champion["version"]) == self.result.first_champion:
            self.echo(f"no new champion went live (promote_champion: {states.get('promote_champion')})")
            return False
        self.result.new_champion = str(champion["version"])
        verify = next(t for t in client.task_instances(self.retrain, run_id) if t["task_id"] == "verify_live")
        live_at = _parse_time(verify["end_date"])
        self.result.loop_seconds = live_at - drift_injected
        self.result.loop_steps = [
            loop_step(client, f"{self.monitor} {self.monitor_run}", self.monitor, self.monitor_run, drift_injected, live_at),
            loop_step(client, f"{self.retrain} {run_id} (until verify_live)", self.retrain, run_id, drift_injected, live_at),
        ]
        tasks = client.task_instances(self.monitor, self.monitor_run) + client.task_instances(self.retrain, run_id)
        self.result.loop_busy = busy_seconds(tasks, drift_injected, live_at)
        return finished["state"] == "success"

    def backfill_rescored(self) -> bool:
        from mlops_airflow.core.partitions import days_between, read_window

        client = self.client
        backfill = next(iter(client.backfills(self.batch_score)), None)
        if backfill is None:
            self.echo(f"no backfill of {self.batch_score} was created")
            return False
        start, end = dt.date.fromisoformat(backfill["from_date"][:10]), dt.date.fromisoformat(backfill["to_date"][:10])
        self.echo(f"airflow: backfill {backfill['id']} of {self.batch_score} over {start}..{end}; waiting for its runs")
        deadline = time.monotonic() + RUN_TIMEOUT
        days = [d.isoformat() for d in days_between(start, end + ONE_DAY)]
        while True:
            runs = {r["logical_date"][:10]: r for r in client.dag_runs(self.batch_score) if r.get("logical_date") and r["logical_date"][:10] in days}
            if len(runs) == len(days) and all(r["state"] in ("success", "failed") for r in runs.values()):
                break
            if time.monotonic() > deadline:
                self.echo(f"the backfill's runs are still {sorted({r['state'] for r in runs.values()})} after {RUN_TIMEOUT:.0f} s")
                return False
            time.sleep(3)
        spec = stack_spec(self.config, self.model)
        ok = True
        for day in days:
            run = runs[day]
            versions = sorted(
                set(read_window(spec.data.predictions_uri, dt.date.fromisoformat(day), dt.date.fromisoformat(day) + ONE_DAY).frame.get("model_version", []))
            )
            self.echo(f"  {day}  run {run['dag_run_id']:<40} {run['state']:<8} predictions by v{', v'.join(versions) or '-'}")
            ok = ok and run["state"] == "success" and versions == [self.result.new_champion]
        self.result.backfill_days = days
        return ok

    # -- narration -------------------------------------------------------------------------------

    def wait_for_new_run(self, dag_id: str, known: set[str], *, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [r["dag_run_id"] for r in self.client.dag_runs(dag_id) if r["dag_run_id"] not in known]
            if new:
                return new[0]
            time.sleep(2)
        return None

    def print_run(self, dag_id: str, run_id: str, state: str) -> None:
        self.echo(f"{dag_id} run {run_id}: {state.upper()}")
        for ti in sorted(self.client.task_instances(dag_id, run_id), key=lambda t: t.get("start_date") or "~"):
            duration = f"{ti['duration']:.1f} s" if ti.get("duration") is not None else "-"
            self.echo(f"  {ti['task_id']:<28} {str(ti['state']):<10} try {ti.get('try_number', '?')}  {duration}")

    def echo_decision(self, version: dict) -> None:
        tags = version_tags(version)
        self.echo(f"model: {self.model} v{version['version']} is {CHAMPION_ALIAS!r} (MLflow run {version['run_id']})")
        if TAG_DECISION in tags:
            self.echo(f"       decision: {tags[TAG_DECISION]} ({tags.get(TAG_DECISION_REASONS, '')})")

    def echo_drift(self, recorded: dict) -> None:
        from mlops_airflow.core.payloads import DriftSummary

        summary = DriftSummary.from_xcom(recorded)
        self.echo(f"drift: window {summary.window_start}..{summary.window_end}, onset {summary.onset}, against champion v{summary.champion_version}")
        for feature, test in summary.features.items():
            if feature in summary.drifted_features:
                effect = "-" if test.effect is None else f"{test.effect:.3f}"
                q = "-" if test.qvalue is None else f"{test.qvalue:.2e}"
                self.echo(f"  {feature:<24} {test.test:<17} effect {effect:>6}  q {q}")
        first, last = summary.backfill_days
        self.echo(f"  drifted: {', '.join(summary.drifted_features)}; backfill {first}..{last}")

    def show_live(self, day: dt.date) -> None:
        color, version, code, latency, answer = live_prediction(self.config, self.model, day)
        if color is None:
            self.echo(f"serving: nothing is live for {self.model}")
            return
        live_port = stack_spec(self.config, self.model).serving.local.live_port
        self.echo(f"serving: {self.model} v{version} is live on {color} at http://{self.config.host}:{live_port}/invocations")
        self.echo(f"         2 rows of {day} -> HTTP {code} in {latency:.0f} ms: {json.dumps(answer)[:160]}")

    def summary(self, password: str) -> None:
        result = self.result
        self.section("Summary")
        self.echo(f"champion: v{result.first_champion} -> v{result.new_champion or '(unchanged)'}")
        if result.loop_seconds is not None:
            busy = result.loop_busy or 0.0
            self.echo(
                f"drift injected -> new champion live: {result.loop_seconds:.0f} s; tasks running {busy:.0f} s, "
                f"the rest ({result.loop_seconds - busy:.0f} s) is Airflow: scheduling, queueing, task start"
            )
            for step in result.loop_steps:
                self.echo(f"  {step.label}: {step.wall:.0f} s, tasks running {step.busy:.0f} s")
        self.echo("phases: " + "; ".join(f"{name} {seconds:.0f} s" for name, seconds in result.phases))
        if result.metrics:
            self.echo(f"metrics received: {sum(result.metrics.values())} ({', '.join(sorted({n.split('.')[1] for n in result.metrics}))})")
        else:
            self.echo(f"metrics: none received on UDP {self.config.statsd_port} (another statsd listener there?)")
        self.echo("")
        self.echo(f"Airflow UI:  {self.config.airflow_url}/dags/{self.retrain}   (user admin, password {password})")
        self.echo(f"MLflow UI:   {self.config.mlflow_url}/#/models/{self.model}")
        self.echo(f"Models page: {self.config.airflow_url}/plugin/mlops-models   (Browse > Models in Airflow's UI)")
        self.echo(f"Logs:        {self.config.log_dir}")


def run_demo(config: StackConfig, model: str = "churn", *, echo: Callable[[str], None] = print) -> bool:
    started = time.monotonic()
    stack = EmbeddedStack(config, echo=echo)
    story = DemoStory(config, model, echo=echo)
    result = story.run(stack)
    password = config.admin_password() or "(see the stack's state folder)"
    story.summary(password)
    echo(
        f"The demo took {time.monotonic() - started:.0f} s: {'the loop closed' if result.ok else 'the loop did NOT close'}. The stack keeps running; `make stop` ends it."
    )
    return result.ok
