"""A second model beside churn, added while a stack runs: defaults of the trigger form, approvals, side-by-side serving.

Shared by the end-to-end tests (the distributed one runs it); also the scheduler-log helpers
the approval checks need.
"""

from __future__ import annotations

import time
from pathlib import Path

from helpers import free_port


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


def add_a_second_model(config) -> dict:
    """``upsell``: churn's data, its own ports and predictions, a person approves every promotion (72 s to answer)."""
    import yaml

    raw = yaml.safe_load((config.specs_dir / "churn.yaml").read_text())
    raw["name"] = "upsell"
    raw["data"]["predictions_uri"] = raw["data"]["predictions_uri"].replace("/churn/", "/upsell/")
    raw["schedules"].update(drift_monitor=None, batch_score=None)  # a spec with no schedule at all
    raw["drift"].update(min_effect=1.0, timeout_minutes=0, watch_interval_seconds=0)  # checks once, by hand, and finds nothing: no retrain of its own
    raw["promotion"].update(require_approval=True, approval_timeout_hours=0.02)
    raw["serving"]["local"] = {"live_port": free_port(), "blue_port": free_port(), "green_port": free_port()}
    (config.specs_dir / "upsell.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


def offline_predictions(config, model: str, day) -> list:
    """What ``model``'s champion predicts for the two rows the live check sends, loaded here from the registry."""
    import datetime as dt
    import tempfile

    from mlops_airflow.core.features import prepare_features
    from mlops_airflow.core.partitions import read_window
    from mlops_airflow.embedded.demo import registry_alias, stack_spec
    from mlops_airflow.serving.model_server import load

    spec = stack_spec(config, model)
    version = registry_alias(config.mlflow_url, model, "champion")["version"]
    rows = prepare_features(read_window(spec.data.uri, day, day + dt.timedelta(days=1)).frame.head(2), spec)
    with tempfile.TemporaryDirectory() as folder:
        predicted = load(f"models:/{model}/{version}", spec.training.estimator.kind, folder).predict(rows)
    return predicted.tolist() if hasattr(predicted, "tolist") else list(predicted)


def approve_when_asked(client, scheduler_log: Path, dag_id: str, run_id: str, option: str = "Approve") -> None:
    assert client.wait_for_task_state(dag_id, run_id, "approve_promotion", {"awaiting_input", "failed", "upstream_failed"}) == "awaiting_input"
    # Airflow 3.3 race: an answer that reaches the API server before the scheduler has taken in
    # the executor's event for the paused try puts the task up for retry, and the retry asks
    # again. A person needs seconds to read the question; a loaded machine can need more than
    # that to process the event, so wait for it.
    wait_for_log_line(scheduler_log, paused_try_event(dag_id, run_id, "approve_promotion"))
    time.sleep(1)
    assert client.respond(dag_id, run_id, "approve_promotion", [option])["responded_by"]["name"] == "admin"


def a_second_model_beside_churn(config, scheduler_log: Path, monkeypatch) -> None:
    """A second model, ``upsell``, added while the stack runs, every run triggered as the UI's form does with
    every field left empty (``{"logical_date": null, "conf": {}}``).

    A person approves its first retrain through the API; each live URL (churn's and its own)
    then answers exactly what its own champion predicts offline. Its second retrain asks for
    an approval nobody gives (it times out and nothing moves) while its scoring and drift
    monitoring run. Every run succeeds at the first try of every task.
    """
    import datetime as dt

    import numpy as np

    from mlops_airflow.embedded.demo import live_prediction, registry_alias, version_tags
    from mlops_airflow.hooks.airflow_api import AirflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", config.mlflow_url)
    client = AirflowClient(config.airflow_url, "admin", config.admin_password())
    add_a_second_model(config)
    for dag_id in ("retrain_upsell", "batch_score_upsell", "drift_monitor_upsell"):
        client.wait_for_dag(dag_id, timeout=240)  # each DAG file is parsed on its own: they appear one by one
        client.set_paused(dag_id, False)  # new DAGs start paused in these stacks

    first = client.trigger("retrain_upsell")["dag_run_id"]
    approve_when_asked(client, scheduler_log, "retrain_upsell", first)
    run = client.wait_for_run("retrain_upsell", first, timeout=900)
    assert (run["state"], run["logical_date"]) == ("success", None), run
    yesterday = dt.datetime.now(tz=dt.UTC).date() - dt.timedelta(days=1)
    upsell = registry_alias(config.mlflow_url, "upsell", "champion")
    assert (upsell["version"], version_tags(upsell)["mlops.decision.by"]) == ("1", "admin")

    # Side by side: each live URL answers exactly what its own champion predicts offline.
    for model in ("churn", "upsell"):
        _, version, code, _, answer = live_prediction(config, model, yesterday)
        assert (code, version) == (200, str(registry_alias(config.mlflow_url, model, "champion")["version"])), model
        np.testing.assert_allclose(answer["predictions"], offline_predictions(config, model, yesterday), rtol=0, atol=1e-12)

    # upsell's next retrain waits for an answer that never comes, while its unscheduled
    # scoring and drift monitoring run with their defaults too.
    churn = registry_alias(config.mlflow_url, "churn", "champion")["version"]
    unanswered = client.trigger("retrain_upsell")["dag_run_id"]
    unscheduled = {dag_id: client.trigger(dag_id)["dag_run_id"] for dag_id in ("batch_score_upsell", "drift_monitor_upsell")}
    for dag_id, run_id in unscheduled.items():
        run = client.wait_for_run(dag_id, run_id, timeout=600)
        assert (run["state"], run["logical_date"]) == ("success", None), (dag_id, run)
    assert (Path(config.data_root) / "upsell" / "predictions" / f"dt={yesterday}").is_dir()
    assert client.wait_for_run("retrain_upsell", unanswered, timeout=900)["state"] == "success"
    states = {t["task_id"]: t["state"] for t in client.task_instances("retrain_upsell", unanswered)}
    assert (states["approve_promotion"], states["promote_champion"], states["deploy_idle_color"]) == ("success", "skipped", "skipped")
    challenger = registry_alias(config.mlflow_url, "upsell", "challenger")
    assert challenger["version"] == "2"
    assert version_tags(challenger)["mlops.decision"] == "rejected"
    assert version_tags(challenger)["mlops.decision.reasons"].startswith("no approval before the timeout")
    assert registry_alias(config.mlflow_url, "upsell", "champion")["version"] == "1"
    for model, version in (("churn", churn), ("upsell", "1")):
        _, live_version, code, _, _ = live_prediction(config, model, yesterday)
        assert (code, live_version) == (200, str(version)), model
    from story_checks import failed_tries

    assert failed_tries(client, ("retrain_upsell", "batch_score_upsell", "drift_monitor_upsell")) == []
