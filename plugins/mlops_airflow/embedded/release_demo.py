"""``make release-demo``: after ``make demo``, a release judged on live traffic, through Airflow, narrated.

1. The stack's copy of the model's spec asks for the strategy (``canary`` by default; ``shadow``
   or ``ab``), with short steps; the DAG processor re-parses ``retrain_<model>``, which gains the
   strategy's task and ``decide_release``.
2. Clients score rows through the live URL all along (a few dozen requests a second).
3. ``retrain_<model>`` is triggered by hand (its defaults, a forced promotion with a reason): train,
   evaluate, promote, deploy the idle colour, smoke test, then the strategy on live traffic.
4. An A/B test always ends Inconclusive (which version does better needs labels): the demo answers
   ``decide_release`` through the REST API, as a person would in the UI.
5. The release's record: each step's or the replay's figures, from the new version's tags.

The spec copy is put back as it was at the end; ``make up`` writes it afresh anyway.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_airflow.constants import CHAMPION_ALIAS, RETRAIN_DAG_PREFIX
from mlops_airflow.embedded.config import StackConfig
from mlops_airflow.embedded.demo import RUN_TIMEOUT, registry_alias, stack_spec, version_tags
from mlops_airflow.hooks.airflow_api import AirflowClient

GATES = {"canary": "canary_release", "shadow": "shadow_replay", "ab": "ab_test"}
DEMO_RELEASE = {
    # A retrain on a newer window may score this traffic differently (KS D about 0.2 here): the demo's limit is looser.
    "canary": {"steps": [10, 50], "step_seconds": 20, "min_requests": 20, "max_output_shift": 0.4},
    "shadow": {"window_minutes": 10, "min_requests": 20},
    "ab": {"percent": 30, "duration_minutes": 0.5, "min_requests": 20},
}


class Traffic:
    """Clients posting 2-row requests to the live URL until stopped; counts the answers by status."""

    def __init__(self, url: str, bodies: list[bytes], *, clients: int = 2, pause: float = 0.03) -> None:
        self.url, self.bodies, self.pause = url, bodies, pause
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _client(self, index: int) -> None:
        # Bodies in random order, as real clients' rows come: a cycle of bodies in step with the router's weighted
        # round robin would give the new colour a biased share of them (and its scores a spurious shift).
        draw = random.Random(index)  # noqa: S311 - the order of demo requests, not a secret
        while not self._stop.is_set():
            body = draw.choice(self.bodies)
            request = urllib.request.Request(f"{self.url}/invocations", data=body, method="POST", headers={"Content-Type": "application/json"})  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the stack's live URL
                    status = response.status
                    response.read()
            except urllib.error.HTTPError as err:
                status = err.code
            except OSError:
                status = 0
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            time.sleep(self.pause)


def request_bodies(spec: Any, rows: int = 200) -> list[bytes]:
    """2-row ``dataframe_split`` requests of fresh synthetic rows with the spec's features, and the performance key
    beside them (as a client sends it, so that the answers join their labels later)."""
    from mlops_airflow.core.features import prepare_features
    from mlops_airflow.embedded.synthetic import generate_day

    frame = generate_day(dt.datetime.now(dt.UTC).date(), rows=rows)
    features = prepare_features(frame, spec)
    if spec.performance is not None and spec.performance.key in frame.columns:
        features = features.assign(**{spec.performance.key: frame[spec.performance.key].to_numpy()})
    return [json.dumps({"dataframe_split": json.loads(features.iloc[i : i + 2].to_json(orient="split", index=False))}).encode() for i in range(0, rows, 2)]


def write_spec_copy(path: Path, release: dict[str, Any]) -> str:
    """Set ``serving.release`` in the stack's spec copy; the text it had, to put back."""
    import yaml

    before = path.read_text()
    header = "".join(line + "\n" for line in before.splitlines() if line.startswith("#"))
    raw = yaml.safe_load(before)
    raw.setdefault("serving", {})["release"] = release
    raw["serving"].setdefault("inference_log", {"sample_rate": 1.0})
    temporary = path.with_suffix(".tmp")
    temporary.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    temporary.replace(path)
    return before


def registry_version(mlflow_url: str, model: str, version: str) -> dict:
    """One version of the registered model, with its tags, from MLflow's REST API; empty when there is none."""
    query = urllib.parse.urlencode({"name": model, "version": version})
    try:
        with urllib.request.urlopen(f"{mlflow_url}/api/2.0/mlflow/model-versions/get?{query}", timeout=10) as response:  # noqa: S310 - the stack's MLflow
            return json.loads(response.read())["model_version"]
    except (OSError, ValueError, KeyError):
        return {}


def wait_for_task(client: AirflowClient, dag_id: str, task_id: str, *, timeout: float = 180.0) -> None:
    """Until the DAG processor has re-parsed ``dag_id`` with ``task_id`` in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = client._request("GET", f"/api/v2/dags/{dag_id}/tasks").get("tasks", [])
        if any(task["task_id"] == task_id for task in tasks):
            return
        time.sleep(2.0)
    raise TimeoutError(f"{dag_id} has no task {task_id} after {timeout:.0f} s: see the DAG processor's log")


def run_release_demo(config: StackConfig, model: str = "churn", strategy: str = "canary", *, echo: Callable[[str], None] = print) -> bool:
    if strategy not in GATES:
        raise ValueError(f"strategy must be one of {sorted(GATES)}, got {strategy!r}")
    password = config.admin_password()
    if password is None or registry_alias(config.mlflow_url, model, CHAMPION_ALIAS) is None:
        echo(f"No {model} champion on a running stack: run `make demo` first.")
        return False
    client = AirflowClient(config.airflow_url, "admin", password)
    dag_id, gate = f"{RETRAIN_DAG_PREFIX}{model}", GATES[strategy]
    spec = stack_spec(config, model)
    spec_file = Path(spec.source)
    release = {"strategy": strategy, strategy: DEMO_RELEASE[strategy]}
    echo(f"== 1. {spec_file.name} in the stack asks for a {strategy} release: {json.dumps(release[strategy])}")
    before = write_spec_copy(spec_file, release)
    run_id = None
    try:
        wait_for_task(client, dag_id, gate)
        echo(f"airflow: {dag_id} now runs {gate} and decide_release between smoke_test_idle and switch_traffic")
        live_url = f"http://{config.host}:{spec.serving.local.live_port}"
        echo(f"== 2. Clients score through {live_url} during the whole release")
        with Traffic(live_url, request_bodies(spec)) as traffic:
            time.sleep(5)  # some logged traffic before the release (what a shadow replays)
            run_id = client.trigger(dag_id, conf={"force_promote": True, "reason": f"make release-demo: a {strategy} release"})["dag_run_id"]
            echo(f"== 3. airflow: triggered {dag_id} run {run_id}; waiting for it")
            try:
                state = wait_answering(client, dag_id, run_id, gate, echo=echo)
            except BaseException:
                abandon(client, dag_id, run_id, model, echo=echo)
                raise
        echo(f"{dag_id} run {run_id}: {state.upper()}")
        for ti in sorted(client.task_instances(dag_id, run_id), key=lambda t: t.get("start_date") or "~"):
            duration = f"{ti['duration']:.1f} s" if ti.get("duration") is not None else "-"
            echo(f"  {ti['task_id']:<28} {str(ti['state']):<16} {duration}")
        echo(f"clients: {sum(traffic.statuses.values())} requests during the release, answers by status {dict(sorted(traffic.statuses.items()))}")
        released = str((client.xcom(dag_id, run_id, "deploy_idle_color") or {}).get("version"))
        champion = registry_alias(config.mlflow_url, model, CHAMPION_ALIAS) or {}
        echo(f"== 5. The record on {model} v{released} (its mlops.release.* tags); the champion is v{champion.get('version')}")
        for key, value in sorted(version_tags(registry_version(config.mlflow_url, model, released)).items()):
            if key.startswith("mlops.release."):
                echo(f"  {key}: {value}")
        return state == "success"
    finally:
        temporary = spec_file.with_suffix(".tmp")
        temporary.write_text(before)
        temporary.replace(spec_file)
        echo(f"{spec_file.name} is back to its {spec.serving.release.strategy} release")


def abandon(client: AirflowClient, dag_id: str, run_id: str, model: str, *, echo: Callable[[str], None]) -> None:
    """The demo stops before the run ends: a waiting decision is answered Reject (the rollback runs); otherwise say what may be left."""
    try:
        if client.hitl_detail(dag_id, run_id, "decide_release"):
            client.respond(dag_id, run_id, "decide_release", ["Reject"])
            echo(f"airflow: answered Reject to decide_release of {run_id}: the rollback puts live traffic back")
            return
    except Exception as err:  # the demo is stopping anyway; say what to do by hand
        echo(f"airflow: could not answer decide_release ({err})")
    echo(f"{dag_id} run {run_id} goes on without the demo; if it stops half-way, live traffic may stay split: trigger rollback_{model}")


def wait_answering(client: AirflowClient, dag_id: str, run_id: str, gate: str, *, echo: Callable[[str], None]) -> str:
    """Wait for the run; answer ``decide_release`` (Approve) when it asks, as a person would in the UI."""
    deadline, answered = time.monotonic() + RUN_TIMEOUT, False
    while time.monotonic() < deadline:
        run = client.get_run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            return run["state"]
        if not answered and client.hitl_detail(dag_id, run_id, "decide_release"):
            analysis = client.xcom(dag_id, run_id, gate) or {}
            echo(f"== 4. decide_release asks a person: the analysis was {analysis.get('verdict')} ({'; '.join(analysis.get('reasons', []))})")
            client.respond(dag_id, run_id, "decide_release", ["Approve"])
            echo("airflow: answered Approve through the REST API, as a person would in the UI")
            answered = True
        time.sleep(3)
    raise TimeoutError(f"{dag_id} run {run_id} did not finish within {RUN_TIMEOUT:.0f} s")
