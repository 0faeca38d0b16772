"""What `make demo`'s story must have left behind, read back through Airflow's REST API, MLflow and the live URL.

Shared by the embedded and the distributed end-to-end tests.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import NamedTuple

from mlops_airflow.embedded.stack import StackConfig

# The end-to-end stacks' settings: a retry 3 s after a failed try instead of 2 minutes, and the
# quick workload profile (a 1 s drain, a loose smoke latency gate; see embedded/profiles.py).
E2E_SETTINGS = {"MLOPS_EMBEDDED_PROFILE": "quick", "MLOPS_RETRY_DELAY_SECONDS": "3"}
STORY_DAGS = ("retrain_churn", "drift_monitor_churn", "batch_score_churn")
FAILED_TRY_STATES = {"failed", "up_for_retry", "upstream_failed"}


class FailedTry(NamedTuple):
    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    state: str

    @property
    def instance(self) -> tuple[str, str, str]:
        return (self.dag_id, self.run_id, self.task_id)


def failed_tries(client, dag_ids=STORY_DAGS) -> list[FailedTry]:
    """Every try that failed, in every run of ``dag_ids``.

    A retried task that then succeeded still shows here: where no fault was injected, every
    task must succeed at its first try (a hidden retry costs minutes in production).
    """
    found = []
    for dag_id in dag_ids:
        for run in client.dag_runs(dag_id):
            for task in client.task_instances(dag_id, run["dag_run_id"]):
                if task["try_number"] <= 1 and task["state"] not in FAILED_TRY_STATES:
                    continue
                for attempt in client.task_tries(dag_id, run["dag_run_id"], task["task_id"]):
                    if attempt["state"] in FAILED_TRY_STATES:
                        found.append(FailedTry(dag_id, run["dag_run_id"], task["task_id"], attempt["try_number"], attempt["state"]))
    return sorted(found)


def the_story_happened(config: StackConfig, monkeypatch, *, faults: Collection[tuple[str, str, str]] = ()) -> dict:
    """Every step's outcome, read back through Airflow's REST API, MLflow and the live URL.

    :param faults: ``(dag_id, run_id, task_id)`` of the task instances a fault struck while they
        ran; every other task succeeded at its first try.
    """
    import datetime as dt
    import json

    import pandas as pd

    from mlops_airflow.embedded.demo import live_prediction, registry_alias, version_tags
    from mlops_airflow.hooks.airflow_api import AirflowClient
    from mlops_airflow.operators.backfill import BackfillScoresOperator

    monkeypatch.setenv("MLOPS_DATA_ROOT", str(config.data_root))  # the stack's, for reading its data here
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(config.specs_dir))
    password = config.admin_password()
    client = AirflowClient(config.airflow_url, "admin", password)
    today = dt.datetime.now(tz=dt.UTC).date()
    drift_start = today - dt.timedelta(days=3)

    # retrain: the first champion (by hand), then one run started by drift, both successful.
    retrains = {run["dag_run_id"]: run for run in client.dag_runs("retrain_churn")}
    (first,) = [run for run_id, run in retrains.items() if run_id.startswith("manual__")]
    (drift_run,) = [run for run_id, run in retrains.items() if run_id.startswith("drift__")]
    assert (first["state"], drift_run["state"]) == ("success", "success")
    assert drift_run["conf"]["drift"]["onset"] == str(drift_start)
    assert drift_run["conf"]["window_end"] == str(today)
    # The drift monitor's scheduled run detected it and triggered that run.
    monitors = [run for run in client.dag_runs("drift_monitor_churn") if run["state"] == "success"]
    assert any(client.xcom("drift_monitor_churn", run["dag_run_id"], "decide_retrain") for run in monitors)
    states = {t["task_id"]: t["state"] for t in client.task_instances("retrain_churn", drift_run["dag_run_id"])}
    assert {task: states[task] for task in ("promote_champion", "switch_traffic", "verify_live", "backfill_scores")} == dict.fromkeys(
        ("promote_champion", "switch_traffic", "verify_live", "backfill_scores"), "success"
    )

    # The registry: the drift retrain's version is champion, by evidence; the first one is previous_champion.
    champion = registry_alias(config.mlflow_url, "churn", "champion")
    previous = registry_alias(config.mlflow_url, "churn", "previous_champion")
    assert version_tags(champion)["mlops.decision"] == "promoted"
    assert version_tags(champion)["mlops.decision.dag_run"] == f"retrain_churn/{drift_run['dag_run_id']}"
    assert int(previous["version"]) < int(champion["version"])

    # The live colour serves the champion, through the live URL.
    color, version, code, _, answer = live_prediction(config, "churn", today - dt.timedelta(days=1))
    assert (version, code, len(answer["predictions"])) == (str(champion["version"]), 200, 2), color

    # The drifted days were re-scored by a backfill of batch_score, with the new champion.
    (backfill,) = client.backfills("batch_score_churn")
    assert (backfill["from_date"][:10], backfill["to_date"][:10]) == (str(drift_start), str(today - dt.timedelta(days=1)))
    days = [str(drift_start + dt.timedelta(days=d)) for d in range(3)]
    runs = {run["logical_date"][:10]: run for run in client.dag_runs("batch_score_churn") if (run.get("logical_date") or "")[:10] in days}
    assert sorted(runs) == days
    assert {run["state"] for run in runs.values()} == {"success"}
    predictions = Path(config.data_root) / "churn" / "predictions"
    for day in days:
        frame = pd.read_parquet(next((predictions / f"dt={day}").glob("*.parquet")))
        assert set(frame["model_version"]) == {str(champion["version"])}, day

    # The backfill task again, against the same API: the existing backfill is found, not doubled.
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({"conn_type": "http", "host": config.airflow_url, "login": "admin", "password": password}))
    again = BackfillScoresOperator(task_id="backfill_scores", batch_score_dag_id="batch_score_churn", drift_monitor_dag_id="drift_monitor_churn").execute(
        {"params": {"drift": drift_run["conf"]["drift"]}}
    )
    assert (again["backfill_id"], again["created"]) == (backfill["id"], False)
    # No task failed a try, but where a fault was injected (the failed tries that are, are returned).
    failed = failed_tries(client)
    unexpected = [attempt for attempt in failed if attempt.instance not in set(faults)]
    assert unexpected == [], f"tries failed where no fault was injected: {unexpected}"
    return {"client": client, "first": first, "drift_run": drift_run, "champion": champion, "previous": previous, "failed_tries": failed}
