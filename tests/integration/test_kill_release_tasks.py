"""Kill and re-run, continued: the promotion, serving, drift and backfill tasks.

As in ``test_kill_idempotency``: each operator's ``execute()`` runs in a forked process
that is SIGKILLed after a seeded random delay within its clean duration; the same task
then runs again, as Airflow's next try (``try_number`` 2). Kill points are sampled with the
session's seed as in ``test_kill_idempotency`` (``MLOPS_TEST_FULL=1`` runs all 36). Afterwards its outputs equal a
clean run's, no file is half-written, and no process is left that the backend does not
know of. Every kill point starts from the same state: the state before a clean run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from fake_airflow_api import FakeAirflowApi
from helpers import (
    DATA_END,
    DRIFT_START,
    alias_version,
    free_port,
    fresh_mlflow_db,
    kill_plan,
    mark_promoted,
    partial_files,
    processes_with_env,
    run_killed,
    task_context,
    write_drift_data,
    write_drift_spec,
)

from mlops_airflow.constants import DECISION_ARTIFACT_DIR, TAG_DECISION, TAG_DRIFT_LAST_TRIGGER

pytestmark = pytest.mark.integration

KILL_POINTS = {"promote": 8, "deploy": 5, "switch": 5, "detect_drift": 5, "decide_retrain": 4, "drift_report": 4, "backfill": 5}  # 36
SAMPLED_KILL_POINTS = {"promote": 3, "deploy": 2, "switch": 2, "detect_drift": 2, "decide_retrain": 2, "drift_report": 2, "backfill": 2}  # 15
MARKER = f"MLOPS_KILL_RELEASE_TEST={uuid.uuid4().hex}"
SUMMARY_KEYS_THAT_VARY = {"checked_at"}


class ReleaseWorld:
    """Two trained versions (v1 before the drift, v2 after), local serving on free ports, a fake backfill API."""

    def __init__(self, root: Path, monkeypatch) -> None:
        from mlops_airflow.operators.training_local import LocalModelTrainingOperator

        self.root = root
        self.uri = fresh_mlflow_db(root / "mlflow.db")
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "extra": {"tracking_uri": self.uri}}))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.uri)
        for name in ("LIVE", "ADMIN", "BLUE", "GREEN"):
            monkeypatch.setenv(f"MLOPS_SERVING_{name}_PORT", str(free_port()))
        # Slow enough (0.2 s an answer) for kills to land between calls, and after a creation before its answer.
        self.api = FakeAirflowApi(login="admin", password="kill-test", answer_delay=0.2)
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", self.api.connection())
        key, value = MARKER.split("=")
        monkeypatch.setenv(key, value)  # every process a task starts inherits it
        monkeypatch.chdir(root)
        write_drift_data(root / "data", days=12)
        self.spec_path = write_drift_spec(root, root / "data", window_days=2, cooldown_hours=24)
        import yaml

        raw = yaml.safe_load(Path(self.spec_path).read_text())  # the drift spec, changed for training
        raw["training"].update(window_days=6, validation_days=2, reference_sample_rows=600)
        raw["training"]["estimator"] = {"kind": "hist_gradient_boosting", "params": {"max_iter": 20}}
        raw["serving"]["drain_seconds"] = 0
        Path(self.spec_path).write_text(yaml.safe_dump(raw))
        self.versions = {}
        for label, end in (("before_drift", DRIFT_START), ("after_drift", DATA_END)):
            operator = LocalModelTrainingOperator(
                task_id="train_model", spec_path=self.spec_path, window_start=str(end - dt.timedelta(days=6)), window_end=str(end)
            )
            self.versions[label] = operator.execute(self.context(f"manual__{label}", "train_model"))["version"]
        self.v1, self.v2 = self.versions["before_drift"], self.versions["after_drift"]
        mark_promoted(self.client, "churn", self.v1)  # deploy serves promoted versions only
        self.set_aliases(champion=self.v1)
        self.report = self.evaluate()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri, self.uri)

    def context(self, run_id: str, task_id: str, try_number: int = 1, xcoms: dict | None = None, params: dict | None = None) -> dict:
        return task_context(xcoms, run_id=run_id, user="kill-test", try_number=try_number, task_id=task_id, params=params)

    def set_aliases(self, **aliases: str | None) -> None:
        for alias, version in aliases.items():
            if version is None:
                self.client.delete_registered_model_alias("churn", alias)  # nothing to do when it is not set
            else:
                self.client.set_registered_model_alias("churn", alias, version)

    def alias(self, name: str) -> str | None:
        return alias_version(self.client, "churn", name)

    def evaluate(self) -> dict:
        from mlops_airflow.operators.evaluation import EvaluateChallengerOperator

        operator = EvaluateChallengerOperator(task_id="evaluate_challenger", spec_path=self.spec_path, window_end=str(DATA_END), challenger_version=self.v2)
        return operator.execute(self.context("manual__evaluate", "evaluate_challenger"))

    def backend(self):
        from mlops_airflow.serving.local import LocalServingBackend

        return LocalServingBackend(model="churn")

    def serving_state(self) -> dict:
        """The backend's state file (each test serves from its own folder: the ``serving_state`` fixture)."""
        path = self.backend().state_file
        return json.loads(path.read_text()) if path.exists() else {}

    def known_groups(self) -> set[int]:
        """The process groups the serving state records."""
        state = self.serving_state()
        entries = [*state.get("colors", {}).values(), state.get("proxy"), state.get("front")]
        return {entry["pgid"] for entry in entries if entry and entry.get("pid")}

    def unknown_processes(self) -> list[str]:
        """Processes a task started that nobody knows of: not in a process group the serving state records."""
        known = self.known_groups()
        found = []
        for pid in processes_with_env(MARKER):
            try:
                if os.getpgid(pid) not in known:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:300].decode()
                    found.append(f"{pid} (group {os.getpgid(pid)}): {command}")
            except (ProcessLookupError, OSError):
                continue
        return found

    def drift_summary(self) -> dict:
        return self.detect(self.context("manual__summary", "detect_drift"))

    def detect(self, context: dict) -> dict:
        from mlops_airflow.sensors.drift import FeatureDriftSensor

        return FeatureDriftSensor(task_id="detect_drift", spec_path=self.spec_path, window_end=str(DATA_END)).execute(context)

    # -- the tasks, each with the state it starts from and the outputs it must reach --------------

    def reset(self, kind: str) -> None:
        if kind == "promote":
            self.set_aliases(champion=self.v1, previous_champion=None)
            self.client.set_model_version_tag("churn", self.v2, TAG_DECISION, "none")
        elif kind == "deploy":
            self.backend().stop_all()
            for path in self.backend().state_dir.glob("churn*.json"):
                path.unlink()
            self.set_aliases(champion=self.v1)
        elif kind == "switch":
            mark_promoted(self.client, "churn", self.v2)  # switch serves promoted versions only; "promote" resets v2's record
            backend = self.backend()
            from mlops_airflow.serving.base import Color
            from mlops_airflow.serving.local_processes import group_alive, stop_group

            backend.switch(Color.BLUE)
            for entry in (self.serving_state().get("proxy"), self.serving_state().get("front")):  # the router died as well
                if entry and group_alive(entry["pgid"]):
                    stop_group(entry["pgid"])
        elif kind in ("detect_drift", "drift_report"):
            self.set_aliases(champion=self.v1)
        elif kind == "decide_retrain":
            self.client.delete_registered_model_tag("churn", TAG_DRIFT_LAST_TRIGGER)
        elif kind == "backfill":
            self.api.backfills.clear()
            self.api.dag_runs.clear()  # the runs the last backfill queued (the fake never finishes them)
            self.api.cleared.clear()

    def execute(self, kind: str, run_id: str, try_number: int) -> object:
        from mlops_airflow.operators.backfill import BackfillScoresOperator
        from mlops_airflow.operators.drift import DriftReportOperator, DriftRetrainGateOperator
        from mlops_airflow.operators.registry import PromoteChampionOperator
        from mlops_airflow.operators.serving import DeployIdleColorOperator, SwitchTrafficOperator

        summary = self.summary
        if kind == "promote":
            operator = PromoteChampionOperator(
                task_id="promote_champion", spec_path=self.spec_path, window_end=str(DATA_END), force_promote=True, reason="kill test", approval_task_id=None
            )
            return operator.execute(self.context(run_id, "promote_champion", try_number, {"evaluate_challenger": self.report}))
        if kind == "deploy":
            return DeployIdleColorOperator(task_id="deploy_idle_color", spec_path=self.spec_path).execute(self.context(run_id, "deploy_idle_color", try_number))
        if kind == "switch":
            from mlops_airflow.core.payloads import Release

            release = Release(action="deployed", color="green", version=self.v2, run_id="").to_xcom()
            return SwitchTrafficOperator(task_id="switch_traffic", spec_path=self.spec_path).execute(
                self.context(run_id, "switch_traffic", try_number, {"deploy_idle_color": release})
            )
        if kind == "detect_drift":
            return self.detect(self.context(run_id, "detect_drift", try_number))
        if kind == "decide_retrain":
            gate = DriftRetrainGateOperator(task_id="decide_retrain", spec_path=self.spec_path, sensor_task_id="detect_drift")
            return gate.execute(self.context(run_id, "decide_retrain", try_number, {"detect_drift": summary}))
        if kind == "drift_report":
            report = DriftReportOperator(task_id="render_drift_report", spec_path=self.spec_path, sensor_task_id="detect_drift")
            return report.execute(self.context(run_id, "render_drift_report", try_number, {"detect_drift": summary}))
        operator = BackfillScoresOperator(task_id="backfill_scores", batch_score_dag_id="batch_score_churn", drift_monitor_dag_id="drift_monitor_churn")
        drift = {**summary, "monitor_run_id": "manual__summary"}  # the run whose sensor recorded it (the fake API's XCom)
        return operator.execute(self.context(run_id, "backfill_scores", try_number, params={"drift": drift}))

    def outputs(self, kind: str, run_id: str, result) -> object:
        """What a clean run and a killed-then-re-run task must agree on (the run id aside)."""
        if kind == "promote":
            tags = self.client.get_model_version("churn", self.v2).tags
            artifacts = [a.path for a in self.client.list_artifacts(self.report["challenger"]["run_id"], DECISION_ARTIFACT_DIR)]
            return {
                "champion": self.alias("champion"),
                "previous_champion": self.alias("previous_champion"),
                "decision": tags.get(TAG_DECISION),
                "decision_recorded_for_this_run": any(run_id in path for path in artifacts),
                "lock_left": bool(self.client.search_registered_models("name = 'churn.promotion-lock'")),
                "result": {key: result[key] for key in ("decision", "version")},
            }
        if kind in ("deploy", "switch"):
            status = self.backend().status()
            colors = {str(c): (s.version, s.ready) for c, s in status.colors.items() if s.ready}
            result = {key: result[key] for key in ("action", "color", "version") if key in result} if kind == "deploy" else {"color": result["color"]}
            return {"live": str(status.live), "ready": colors, "unknown_processes": self.unknown_processes(), "result": result}
        if kind == "detect_drift":
            return {key: value for key, value in result.items() if key not in SUMMARY_KEYS_THAT_VARY}
        if kind == "decide_retrain":
            record = json.loads(self.client.get_registered_model("churn").tags[TAG_DRIFT_LAST_TRIGGER])
            drift = dict(result["conf"]["drift"])
            monitor_run = drift.pop("monitor_run_id")  # names the run: compared on its own
            return {
                "result": {**result, "conf": {**result["conf"], "drift": drift}},
                "monitor_run_is_this_run": monitor_run == run_id,
                "recorded": {key: record[key] for key in ("run_id", "onset", "window_end")},
            }
        if kind == "drift_report":
            champion_run = self.client.get_model_version("churn", self.v1).run_id
            reports = [a for a in self.client.list_artifacts(champion_run, "drift") if run_id.replace(":", "_") in a.path]
            return {
                "uri_is_this_runs": bool(result) and result.endswith(f"{run_id}.html"),
                "reports": len(reports),
                "non_empty": all(a.file_size > 1000 for a in reports),
            }
        from mlops_airflow.core.payloads import DriftSummary

        days = tuple(day.isoformat() for day in DriftSummary.from_xcom(self.summary).backfill_days)
        window = [b for b in self.api.backfills if (b["from_date"][:10], b["to_date"][:10]) == days]
        return {"backfills_for_the_window": len(window), "returned_is_it": [b["id"] for b in window] == [result["backfill_id"]]}


@pytest.fixture(scope="module")
def release_world(tmp_path_factory):
    import mlflow

    with pytest.MonkeyPatch.context() as monkeypatch:
        world = ReleaseWorld(tmp_path_factory.mktemp("kill-release"), monkeypatch)
        world.summary = world.drift_summary()
        assert world.summary["drifted_features"], "the drift fixture must drift"
        world.api.xcoms[("drift_monitor_churn", "manual__summary", "detect_drift")] = world.summary  # the drift record the backfill checks
        yield world
        world.backend().stop_all()
        world.api.close()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def prepare_switch(world: ReleaseWorld) -> None:
    """Blue serves v1 and is live; green serves v2 and is ready."""
    from mlops_airflow.serving.base import Color

    backend = world.backend()
    backend.deploy(Color.BLUE, world.v1, f"models:/churn/{world.v1}", estimator_kind="hist_gradient_boosting")
    backend.deploy(Color.GREEN, world.v2, f"models:/churn/{world.v2}", estimator_kind="hist_gradient_boosting")
    for color in Color:
        backend.wait_ready(color, timeout=120)
    backend.switch(Color.BLUE)


@pytest.mark.parametrize("kind", list(KILL_POINTS))
def test_killed_release_tasks_rerun_to_the_clean_result(release_world, kind):
    world = release_world
    if kind == "switch":
        prepare_switch(world)
    world.reset(kind)
    world.execute(kind, "manual__warm_up", 1)  # first-call costs (imports, connections) are not the task's
    world.reset(kind)
    clean_run = f"manual__clean_{kind}"
    started = time.monotonic()
    clean = world.execute(kind, clean_run, 1)
    duration = time.monotonic() - started
    expected = world.outputs(kind, clean_run, clean)
    plan = kill_plan(kind, full=KILL_POINTS[kind], sampled=SAMPLED_KILL_POINTS[kind])
    differences = []
    for point, delay in enumerate(plan.moments(duration)):
        world.reset(kind)
        run_id = f"manual__kill_{kind}_{point}"
        plan.record(run_killed(lambda run_id=run_id: world.execute(kind, run_id, 1), delay))
        result = world.execute(kind, run_id, 2)  # Airflow's next try
        got, want = world.outputs(kind, run_id, result), expected
        if kind == "promote":  # the decision record names the run
            want = {**expected, "decision_recorded_for_this_run": True}
        if got != want:
            differences.append((point, round(delay, 2), got))
    print(f"\n{kind}: clean run {duration:.2f} s; {plan.describe()}; outputs differing from the clean run: {len(differences)}")
    assert differences == [], f"expected {expected}; got (point, delay, outputs): {differences}; {plan.describe()}"
    assert partial_files(world.root) == partial_files(world.backend().state_dir) == []
    assert world.unknown_processes() == []
    assert plan.outcomes["killed"] == plan.wanted, f"kills must land while the task runs; {plan.describe()}"


def test_stop_leaves_no_process_behind(release_world):
    """Last: each test's serving folder was stopped as ``make stop`` stops it; whatever the kills started is gone too."""
    deadline = time.monotonic() + 10
    while processes_with_env(MARKER) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert release_world.unknown_processes() == []
    assert processes_with_env(MARKER) == []
