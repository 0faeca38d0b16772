"""`make demo` in a temporary folder: the whole loop on the real embedded stack, checked through
Airflow's REST API, MLflow and the live URL; then an approval, `make up` again, and `make stop`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO_ROOT, processes_with_env

from mlops_airflow.embedded.stack import STACK_MARKER_ENV

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def our_processes(marker: str) -> list[int]:
    return processes_with_env(f"{STACK_MARKER_ENV}={marker}")


def paused_try_event(dag_id: str, run_id: str, task_id: str) -> str:
    """The scheduler's log line for the executor event of a task's first, paused try."""
    key = f"TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}', try_number=1"
    return f"Received executor event with state success for task instance {key}"


def wait_for_log_line(path: Path, needle: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{needle!r} did not appear in {path} within {timeout:.0f} s")


def approval_is_asked_then_a_rejection_is_recorded(env: dict[str, str]) -> None:
    """A run with require_approval waits in the HITL state; a person rejects it through the REST API."""
    import datetime as dt
    import json
    import urllib.request

    from mlops_airflow.airflow_api import AirflowClient
    from mlops_airflow.embedded.stack import StackConfig

    config = StackConfig.from_env(REPO_ROOT, environ=env)
    client = AirflowClient(config.airflow_url, "admin", config.admin_password())
    today = dt.datetime.now(tz=dt.UTC).date().isoformat()
    run_id = client.trigger("retrain_churn", conf={"window_end": today, "reason": "e2e approval", "require_approval": True})["dag_run_id"]
    assert client.wait_for_task_state("retrain_churn", run_id, "approve_promotion", {"awaiting_input", "failed", "upstream_failed"}) == "awaiting_input"
    # Airflow 3.3 race: an answer that reaches the API server before the scheduler has taken in
    # the executor's event for the paused try puts the task up for retry, and the retry asks
    # again (reproduced here with an answer sent at once). A person needs seconds to read the
    # question; a loaded machine can need more than that to process the event, so wait for it.
    wait_for_log_line(Path(env["MLOPS_STATE_DIR"]) / "logs" / "airflow.log", paused_try_event("retrain_churn", run_id, "approve_promotion"))
    time.sleep(1)
    answer = client.respond("retrain_churn", run_id, "approve_promotion", ["Reject"])
    assert answer["responded_by"]["name"] == "admin"
    assert client.wait_for_run("retrain_churn", run_id)["state"] == "success"
    states = {t["task_id"]: t["state"] for t in client.task_instances("retrain_churn", run_id)}
    assert (states["approve_promotion"], states["promote_champion"]) == ("success", "skipped")
    with urllib.request.urlopen(f"{config.mlflow_url}/api/2.0/mlflow/registered-models/alias?name=churn&alias=challenger", timeout=10) as response:
        tags = {t["key"]: t["value"] for t in json.loads(response.read())["model_version"]["tags"]}
    assert (tags["mlops.decision"], tags["mlops.decision.by"]) == ("rejected", "admin")
    assert tags["mlops.decision.reasons"].startswith("approval rejected by admin")


def the_story_happened(env: dict[str, str], monkeypatch) -> None:
    """Every step's outcome, read back through Airflow's REST API, MLflow and the live URL."""
    import datetime as dt
    import json

    import pandas as pd

    from mlops_airflow.airflow_api import AirflowClient
    from mlops_airflow.embedded.demo import live_prediction, registry_alias, version_tags
    from mlops_airflow.embedded.stack import StackConfig
    from mlops_airflow.operators.backfill import BackfillScoresOperator

    config = StackConfig.from_env(REPO_ROOT, environ=env)
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
    again = BackfillScoresOperator(task_id="backfill_scores", batch_score_dag_id="batch_score_churn").execute({"params": {"drift": drift_run["conf"]["drift"]}})
    assert (again["backfill_id"], again["created"]) == (backfill["id"], False)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_demo_closes_the_loop_and_stop_leaves_nothing(tmp_path, monkeypatch):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_"))}
    env.update(
        MLOPS_STATE_DIR=str(state),
        MLOPS_AIRFLOW_PORT=str(free_port()),
        MLOPS_MLFLOW_PORT=str(free_port()),
        MLOPS_WORKER_LOG_PORT=str(free_port()),
        MLOPS_TRIGGER_LOG_PORT=str(free_port()),
        MLOPS_STATSD_PORT=str(free_port()),
        **{f"MLOPS_SERVING_{name}_PORT": str(free_port()) for name in ("LIVE", "ADMIN", "BLUE", "GREEN")},
    )
    command = [sys.executable, "-m", "mlops_airflow.embedded"]
    try:
        demo = subprocess.run([*command, "demo"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False)
        print(demo.stdout)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        out = demo.stdout
        assert "airflow: pools mlops_promotion (1)" in out
        # The first champion: trained, promoted on the minimums alone through the one-slot pool, released.
        assert "retrain_churn run manual__" in out
        assert "train_model                  success" in out
        assert "promote_champion             success" in out
        assert "decision: promoted" in out
        assert f"at http://127.0.0.1:{env['MLOPS_SERVING_LIVE_PORT']}/invocations" in out
        assert "-> HTTP 200" in out
        # Drift: detected by the monitor's scheduled run, which triggered the retrain.
        assert "drift_monitor_churn run scheduled__" in out
        assert "drift: triggered retrain_churn run drift__" in out
        assert "(started by drift)" in out
        assert "champion: v1 -> v2" in out
        assert out.count("predictions by v2") == 3
        assert "drift injected -> new champion live: " in out
        for family in ("data_check", "drift", "promotion", "serving"):
            assert family in out.split("metrics received: ", 1)[1].splitlines()[0], family
        assert "the loop closed" in out
        assert "(user admin, password " in out
        assert our_processes(str(state)), "the stack should keep running after the demo"
        the_story_happened(env, monkeypatch)
        approval_is_asked_then_a_rejection_is_recorded(env)

        again = subprocess.run([*command, "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 2
    finally:
        stop = subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert stop.returncode == 0, stop.stderr
    assert our_processes(str(state)) == []
