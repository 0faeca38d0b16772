"""Kill a task at a random point, run it again: the outputs are those of a clean run, with no debris.

Each operator's ``execute()`` runs in a forked process (what a task process is) that is
SIGKILLed after a seeded random delay within the operator's clean duration; then the same
task runs again to completion. A normal run samples a few kill points per task with the
session's seed (``MLOPS_TEST_SEED``, printed at the end of the run and in any failure), so
every run kills at other moments; ``MLOPS_TEST_FULL=1`` runs all of them. Afterwards: the outputs equal the clean run's, no partial
file is left (writes go to a temporary path and are renamed), training registered exactly
one model version for the DAG run, and no process the killed task started is still alive.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

import pytest
from helpers import churn_spec_raw, fresh_mlflow_db, kill_plan, mark_promoted, partial_files, processes_with_env, run_killed, task_context, write_spec

pytestmark = pytest.mark.integration

END = dt.date(2026, 5, 1)
DAYS = 12
# Kill points per task: all of them with MLOPS_TEST_FULL=1 (50), a seeded sample otherwise (11).
KILL_POINTS = {"data_check": 21, "score": 21, "train": 8}
SAMPLED_KILL_POINTS = {"data_check": 4, "score": 4, "train": 3}
MARKER = f"MLOPS_KILL_TEST={uuid.uuid4().hex}"


class KillWorld:
    def __init__(self, root: Path, monkeypatch) -> None:
        from mlops_airflow.embedded.synthetic import generate

        self.root = root
        self.uri = fresh_mlflow_db(root / "mlflow.db")
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "extra": {"tracking_uri": self.uri}}))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.uri)
        # Processes the tasks start inherit this; any still alive after a kill and a re-run is an orphan.
        key, value = MARKER.split("=")
        monkeypatch.setenv(key, value)
        monkeypatch.chdir(root)
        raw = churn_spec_raw()
        raw["data"].update(uri=str(root / "data" / "events"), predictions_uri=str(root / "data" / "predictions"))
        raw["training"].update(window_days=10, validation_days=3, reference_sample_rows=300)
        raw["training"]["estimator"] = {"kind": "hist_gradient_boosting", "params": {"max_iter": 20}}
        self.spec_path = str(write_spec(raw, root))
        generate(raw["data"]["uri"], END - dt.timedelta(days=DAYS), END, rows_per_day=300, seed=5)

    def context(self, run_id: str) -> dict:
        return task_context(run_id=run_id)

    def operator(self, kind: str):
        if kind == "data_check":
            from mlops_airflow.operators.data_checks import DataContractCheckOperator

            return DataContractCheckOperator(
                task_id="check_training_data",
                spec_path=self.spec_path,
                interval_start=str(END - dt.timedelta(days=10)),
                interval_end=str(END),
                check_label=True,
            )
        if kind == "score":
            from mlops_airflow.operators.scoring import BatchScoreOperator

            return BatchScoreOperator(task_id="score_partition", spec_path=self.spec_path, partition_date=str(END - dt.timedelta(days=1)))
        from mlops_airflow.operators.training_local import LocalModelTrainingOperator

        return LocalModelTrainingOperator(task_id="train_model", spec_path=self.spec_path, window_start=str(END - dt.timedelta(days=10)), window_end=str(END))

    def outputs(self, kind: str, run_id: str, result: dict) -> object:
        """What a clean run and a killed-then-re-run task must agree on."""
        if kind == "data_check":
            report = json.loads(Path(result["report_uri"].removeprefix("file://")).read_text())
            return {key: report[key] for key in ("passed", "rows", "rules_failed", "partitions", "rules")}
        if kind == "score":
            import pandas as pd

            frame = pd.read_parquet(result["uri"].removeprefix("file://"))
            return frame.to_dict(orient="list") | {"version": result["model_version"]}
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.uri, self.uri)
        key = f"retrain_churn/{run_id}"
        runs = client.search_runs([client.get_experiment_by_name("churn").experiment_id], filter_string=f"tags.`mlops.idempotency_key` = '{key}'")
        versions = [str(v.version) for r in runs for v in client.search_model_versions(f"name = 'churn' and run_id = '{r.info.run_id}'")]
        return {"versions_for_the_run": len(versions), "returned_is_registered": result["version"] in versions}


def orphans() -> list[int]:
    return processes_with_env(MARKER)


@pytest.fixture(scope="module")
def kill_world(tmp_path_factory):
    import mlflow

    with pytest.MonkeyPatch.context() as monkeypatch:
        world = KillWorld(tmp_path_factory.mktemp("kill"), monkeypatch)
        # The champion that scoring uses: one clean training run.
        result = world.operator("train").execute(world.context("manual__champion"))
        from mlflow.tracking import MlflowClient

        mark_promoted(MlflowClient(world.uri, world.uri), "churn", result["version"])  # scoring serves promoted versions only
        MlflowClient(world.uri, world.uri).set_registered_model_alias("churn", "champion", result["version"])
        yield world
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.mark.parametrize("kind", list(KILL_POINTS))
def test_killed_tasks_rerun_to_the_clean_result(kill_world, kind):
    world = kill_world
    started = time.monotonic()
    clean = world.operator(kind).execute(world.context(f"manual__clean_{kind}"))
    duration = time.monotonic() - started
    expected = world.outputs(kind, f"manual__clean_{kind}", clean)
    plan = kill_plan(kind, full=KILL_POINTS[kind], sampled=SAMPLED_KILL_POINTS[kind])
    differences = []
    for point, delay in enumerate(plan.moments(duration)):
        run_id = f"manual__kill_{kind}_{point}"
        plan.record(run_killed(lambda run_id=run_id: world.operator(kind).execute(world.context(run_id)), delay))
        result = world.operator(kind).execute(world.context(run_id))
        got = world.outputs(kind, run_id, result)
        want = expected if kind != "train" else {"versions_for_the_run": 1, "returned_is_registered": True}
        if got != want:
            differences.append((point, round(delay, 2), got))
        deadline = time.monotonic() + 5  # a training child notices its task is gone within 0.2 s
        while orphans() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orphans() == [], f"{kind} kill point {point} ({delay:.2f} s) left processes behind; {plan.describe()}"
    print(f"\n{kind}: clean run {duration:.2f} s; {plan.describe()}; outputs differing from the clean run: {len(differences)}")
    assert differences == [], plan.describe()
    assert partial_files(world.root) == []
    assert plan.outcomes["killed"] == plan.wanted, f"kills must land while the task runs; {plan.describe()}"
