"""`make demo` in a temporary folder: the whole loop on the real embedded stack, checked through
Airflow's REST API, MLflow and the live URL; then an approval, `make up` again, and `make stop`."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from browser import browser_missing, chromium_binary
from fake_http import FakeWebhook
from helpers import REPO_ROOT, free_port, listening_beyond_loopback, processes_with_env
from second_model import paused_try_event, wait_for_log_line
from story_checks import E2E_SETTINGS, STORY_DAGS, failed_tries, the_story_happened

from mlops_airflow.embedded.stack import STACK_MARKER_ENV

pytestmark = pytest.mark.e2e


def our_processes(marker: str) -> list[int]:
    return processes_with_env(f"{STACK_MARKER_ENV}={marker}")


def approval_is_asked_then_a_rejection_is_recorded(env: dict[str, str]) -> None:
    """A run with require_approval waits in the HITL state; a person rejects it through the REST API."""
    import datetime as dt
    import json
    import urllib.request

    from mlops_airflow.embedded.stack import StackConfig
    from mlops_airflow.hooks.airflow_api import AirflowClient

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


def a_bad_data_day_stops_only_the_runs_that_read_it(config) -> tuple[str, float]:
    """A day arrives with values the contract forbids: its scoring stops with the report; other days score; fixed, it resumes.

    Its landing also starts the drift monitor at once (the data asset's watcher): see
    :func:`the_landing_started_the_drift_monitor`. Returns the bad day's run id and the
    seconds from the landing to that run's drift decision.
    """
    import datetime as dt
    import json

    import pyarrow as pa

    from mlops_airflow.core.partitions import read_window, write_partition
    from mlops_airflow.embedded.demo import registry_alias, stack_spec
    from mlops_airflow.embedded.synthetic import generate_day
    from mlops_airflow.hooks.airflow_api import AirflowClient

    spec = stack_spec(config, "churn")
    client = AirflowClient(config.airflow_url, "admin", config.admin_password())
    today = dt.datetime.now(tz=dt.UTC).date()
    bad_day, good_day = today, today - dt.timedelta(days=5)
    known_runs = {r["dag_run_id"] for r in client.dag_runs("drift_monitor_churn")}
    frame = generate_day(bad_day, rows=2000)
    frame.loc[:99, "region"] = "atlantis"  # not one of the contract's allowed regions
    landed = dt.datetime.now(tz=dt.UTC)
    write_partition(pa.Table.from_pandas(frame, preserve_index=False), spec.data.uri, bad_day)

    bad = client.trigger("batch_score_churn", conf={"partition_date": str(bad_day)})["dag_run_id"]
    good = client.trigger("batch_score_churn", conf={"partition_date": str(good_day)})["dag_run_id"]
    assert client.wait_for_run("batch_score_churn", good)["state"] == "success"
    assert client.wait_for_run("batch_score_churn", bad)["state"] == "failed"
    states = {t["task_id"]: t["state"] for t in client.task_instances("batch_score_churn", bad)}
    assert (states["check_scoring_data"], states["score_partition"]) == ("failed", "upstream_failed")
    # The report names the rule; the bad partition was moved aside, so nothing reads it by mistake.
    reports = [
        json.loads(path.read_text())
        for path in (Path(config.data_root) / "churn" / "events" / "_reports" / "batch_score_churn").rglob("check_scoring_data.json")
    ]
    failed = [r for r in reports if not r["passed"]]
    assert len(failed) == 1
    assert any(rule["rule"] == "column.allowed_values" and not rule["passed"] for rule in failed[0]["rules"])
    assert read_window(spec.data.uri, bad_day, bad_day + dt.timedelta(days=1)).frame.empty
    assert not (Path(config.data_root) / "churn" / "predictions" / f"dt={bad_day}").exists()

    # The data is fixed; the failed run is cleared and goes on from where it stopped.
    write_partition(pa.Table.from_pandas(generate_day(bad_day, rows=2000), preserve_index=False), spec.data.uri, bad_day)
    assert client.clear_failed("batch_score_churn", bad)
    assert client.wait_for_run("batch_score_churn", bad)["state"] == "success"
    scored = read_window(spec.data.predictions_uri, bad_day, bad_day + dt.timedelta(days=1)).frame
    assert set(scored["model_version"]) == {str(registry_alias(config.mlflow_url, "churn", "champion")["version"])}
    return bad, the_landing_started_the_drift_monitor(client, bad_day, landed, known_runs)


def scheduled_dags_run_with_the_defaults_of_the_trigger_form(config) -> None:
    """What the UI's trigger form sends with every field left empty: ``{"logical_date": null, "conf": {}}``.

    Scoring and drift monitoring at once (both scheduled): each run succeeds. (The distributed
    test triggers a retrain this way, and every DAG of a second model with no schedule at all:
    tests/second_model.py.)
    """
    import datetime as dt

    from mlops_airflow.hooks.airflow_api import AirflowClient

    client = AirflowClient(config.airflow_url, "admin", config.admin_password())
    runs = {dag_id: client.trigger(dag_id)["dag_run_id"] for dag_id in ("batch_score_churn", "drift_monitor_churn")}
    for dag_id, run_id in runs.items():
        run = client.wait_for_run(dag_id, run_id, timeout=900)
        assert (run["state"], run["logical_date"]) == ("success", None), (dag_id, run)
    yesterday = dt.datetime.now(tz=dt.UTC).date() - dt.timedelta(days=1)
    scored = {t["task_id"]: t["state"] for t in client.task_instances("batch_score_churn", runs["batch_score_churn"])}
    assert scored["score_partition"] == "success"
    assert (Path(config.data_root) / "churn" / "predictions" / f"dt={yesterday}").is_dir()


def the_landing_started_the_drift_monitor(client, day, landed, known: set[str]) -> float:
    """An asset-triggered ``drift_monitor_churn`` run consumed the event of ``day``'s landing and reached a decision.

    The run checks the window ending the day it starts, as the trigger form's run does (a
    partition of the current day is not in it). Returns the seconds from the landing to the
    drift decision (``detect_drift`` ending), measured while the other stories run.
    """
    import datetime as dt

    deadline = time.monotonic() + 600
    run_id = None
    while run_id is None:
        assert time.monotonic() < deadline, f"no asset-triggered drift_monitor_churn run consumed the landing of {day}"
        consumed = []  # the day lands again when the fixed data replaces the quarantined one: the first run is the landing's
        for run in client.dag_runs("drift_monitor_churn", run_type="asset_triggered"):
            if run["dag_run_id"] in known:
                continue
            events = client.upstream_asset_events("drift_monitor_churn", run["dag_run_id"])
            if any(day.isoformat() in ((e.get("extra") or {}).get("payload") or {}).get("days", []) for e in events):
                consumed.append((run["run_after"], run["dag_run_id"]))
        run_id = min(consumed)[1] if consumed else None
        time.sleep(0.5)
    decided = client.wait_for_task_state("drift_monitor_churn", run_id, "detect_drift", {"success", "skipped", "failed", "upstream_failed"})
    assert decided in ("success", "skipped"), decided  # drift found, or none: a decision either way
    detect = next(t for t in client.task_instances("drift_monitor_churn", run_id) if t["task_id"] == "detect_drift")
    return (dt.datetime.fromisoformat(detect["end_date"]) - landed).total_seconds()


def the_models_page_in_a_browser(config, newest_run: str) -> Path:
    """Airflow's UI in headless Chromium, logged in as a person is (the session cookie), opens Browse > Models.

    The page in the UI's frame shows churn's champion, the live URL, the drift history and the
    runs, ``newest_run`` among them. Returns the screenshot kept for people to look at.
    """
    from browser import HeadlessChromium

    from mlops_airflow.embedded.demo import registry_alias, stack_spec
    from mlops_airflow.hooks.airflow_api import AirflowClient

    champion = registry_alias(config.mlflow_url, "churn", "champion")["version"]
    live_port = stack_spec(config, "churn").serving.local.live_port
    token = AirflowClient(config.airflow_url, "admin", config.admin_password()).token()
    frame = "document.querySelector('iframe') && document.querySelector('iframe').contentDocument"
    text = f"({frame} && {frame}.body && {frame}.body.innerText.includes('Recent runs') && {frame}.body.innerText)"
    screenshot = REPO_ROOT / ".local" / "test-artifacts" / "models-page.png"
    with HeadlessChromium(height=1800) as browser:
        browser.set_cookie(config.airflow_url, "_token", token)
        browser.open(f"{config.airflow_url}/plugin/mlops-models")
        shown = browser.wait_for(text)
        lines = browser.evaluate(f"{frame}.querySelectorAll('polyline').length")
        browser.screenshot(screenshot)
    assert f"champion: v{champion}" in shown, shown
    assert f"http://127.0.0.1:{live_port}" in shown
    assert newest_run in shown  # the runs table, newest first
    assert "registry:" not in shown, shown  # no part failed
    assert "serving:" not in shown, shown
    assert lines >= 2, "the drift history draws a line per feature"
    return screenshot


def give_rollbacks_a_short_deadline(config, webhook_url: str) -> float:
    """The alert webhook becomes a stand-in, and ``rollback_churn`` gets the shortest deadline a spec takes (0.1 min).

    Returns when the spec was changed (epoch seconds): its DAG must be parsed again before a run has the deadline.
    """
    import yaml

    from mlops_airflow.hooks.airflow_api import AirflowClient
    from mlops_airflow.observability.alerts import DEFAULT_ALERTS_CONN_ID

    client = AirflowClient(config.airflow_url, "admin", config.admin_password())
    client.ensure_connection(DEFAULT_ALERTS_CONN_ID, conn_type="http", host=webhook_url)
    path = config.specs_dir / "churn.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["schedules"]["rollback_deadline_minutes"] = 0.1
    changed = time.time()
    staged = path.with_suffix(".yaml.new")  # the stack's tasks read the spec: they see the old file or the new one, whole
    staged.write_text(yaml.safe_dump(raw, sort_keys=False))
    staged.replace(path)
    return changed


def wait_until_parsed_since(config, dag_id: str, since: float, timeout: float = 300.0) -> None:
    import datetime as dt

    from mlops_airflow.hooks.airflow_api import AirflowClient

    client = AirflowClient(config.airflow_url, "admin", config.admin_password())
    deadline = time.monotonic() + timeout
    while True:
        parsed = (client.get_dag(dag_id) or {}).get("last_parsed_time")
        if parsed and dt.datetime.fromisoformat(parsed).timestamp() > since + 1:
            return
        assert time.monotonic() < deadline, f"{dag_id} was not parsed again within {timeout:.0f} s of its spec changing"
        time.sleep(1)


def the_deadline_alert_reached_the_webhook(webhook, run_id: str, timeout: float = 120.0) -> str:
    """The rollback outlived its 0.1 min: the Deadline Alert's callback, run by the triggerer, posted to the alert webhook."""
    deadline = time.monotonic() + timeout
    while True:
        texts = [str((r["body"] or {}).get("text", "")) for r in list(webhook.requests)]
        late = [t for t in texts if f"rollback_churn run {run_id} is not finished 0.1 min after it was queued" in t]
        if late:
            return late[0]
        assert time.monotonic() < deadline, f"no deadline alert for {run_id}; the webhook got: {texts}"
        time.sleep(1)


def a_rollback_runs_with_the_defaults_of_the_trigger_form(config) -> str:
    """A rollback (never scheduled) triggered with the trigger form's defaults serves the previous champion through the live URL."""
    import datetime as dt

    from mlops_airflow.embedded.demo import live_prediction, registry_alias
    from mlops_airflow.hooks.airflow_api import AirflowClient

    client = AirflowClient(config.airflow_url, "admin", config.admin_password())
    client.set_paused("rollback_churn", False)  # new DAGs start paused in the embedded stack; the demo unpauses only what it runs
    yesterday = dt.datetime.now(tz=dt.UTC).date() - dt.timedelta(days=1)
    previous = registry_alias(config.mlflow_url, "churn", "previous_champion")
    rollback = client.trigger("rollback_churn")["dag_run_id"]
    assert client.wait_for_run("rollback_churn", rollback, timeout=600)["state"] == "success"
    assert registry_alias(config.mlflow_url, "churn", "champion")["version"] == previous["version"]
    _, version, code, _, _ = live_prediction(config, "churn", yesterday)
    assert (code, version) == (200, str(previous["version"]))
    return rollback


def serving_comes_back_after_stop_and_up(command: list[str], env: dict[str, str], config) -> None:
    """``make stop`` then ``make up``: each model's live URL serves the version that was live, and ``make status`` says so."""
    import datetime as dt

    from mlops_airflow.embedded.demo import live_prediction, stack_spec

    yesterday = dt.datetime.now(tz=dt.UTC).date() - dt.timedelta(days=1)
    before = {}
    for model in ("churn",):  # two models: tests/integration/test_local_serving.py and make up's loop over every spec
        _, version, code, _, answer = live_prediction(config, model, yesterday)
        assert code == 200, model
        before[model] = (version, answer)
    stop = subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert stop.returncode == 0, stop.stderr
    assert [live_prediction(config, model, yesterday)[2] for model in before] == [0], "nothing answers while the stack is down"
    up = subprocess.run([*command, "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    print(up.stdout)
    status = subprocess.run([*command, "status"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    print(status.stdout)
    for model, (version, answer) in before.items():
        assert f"serving: {model} v{version} live again on " in up.stdout
        _, restored_version, code, _, restored = live_prediction(config, model, yesterday)
        assert (code, restored_version, restored) == (200, version, answer), model
        live_port = stack_spec(config, model).serving.local.live_port
        assert f"serving {model}: v{version} on " in status.stdout
        assert f"at http://127.0.0.1:{live_port}/invocations, answering" in status.stdout, status.stdout


def log_tails(state: Path, lines: int = 40) -> str:
    """The end of each of the stack's own logs: what a failed run in CI leaves to read (the folder goes with the test)."""
    tails = []
    for log in sorted((state / "logs").glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"\n--- {log.name}, last {len(text)} lines ---\n" + "\n".join(line[:400] for line in text))
    return "".join(tails)


def demo_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_"))}
    env.update(
        MLOPS_STATE_DIR=str(state),
        MLOPS_AIRFLOW_PORT=str(free_port()),
        MLOPS_MLFLOW_PORT=str(free_port()),
        MLOPS_WORKER_LOG_PORT=str(free_port()),
        MLOPS_TRIGGER_LOG_PORT=str(free_port()),
        MLOPS_STATSD_PORT=str(free_port()),
        **{f"MLOPS_SERVING_{name}_PORT": str(free_port()) for name in ("LIVE", "BLUE", "GREEN")},
        **E2E_SETTINGS,
        MLOPS_STACK_OWNER_PID=str(os.getpid()),  # the stack ends with this test process, however it ends
    )
    return env


@pytest.fixture
def state_root():
    """A folder for the stack that PostgreSQL can reach: run by root, it runs as ``nobody``, and pytest's own
    temporary folders are private to their owner (see mlops_airflow.embedded.postgres)."""
    import shutil

    folder = Path(tempfile.mkdtemp(prefix="mlops-e2e-demo-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(1200)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_demo_closes_the_loop_and_stop_leaves_nothing(state_root, monkeypatch):
    command = [sys.executable, "-m", "mlops_airflow.embedded"]
    state = state_root / "state"
    env = demo_env(state)
    try:
        demo = subprocess.run([*command, "demo"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    except BaseException:
        subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        raise
    try:
        print(demo.stdout)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:] + log_tails(state)
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
        # Nothing the stack runs (Airflow's log servers bound every interface) listens beyond loopback.
        assert listening_beyond_loopback(our_processes(str(state))) == []
        from mlops_airflow.embedded.stack import StackConfig
        from mlops_airflow.hooks.airflow_api import AirflowClient

        config = StackConfig.from_env(REPO_ROOT, environ=env)
        the_story_happened(config, monkeypatch)
        # Three stories on different runs and partitions, at once, as a team's day brings them. A bad
        # day is written for today, which no retrain window reads (a window ends before its end day),
        # and which the drift monitor's check does not reach: it finds yesterday's drift at once (its
        # retrain is then skipped as a repeat), so it never waits for a newer partition.
        monkeypatch.setenv("MLOPS_DATA_ROOT", str(config.data_root))
        monkeypatch.setenv("MLOPS_SPECS_DIR", str(config.specs_dir))
        webhook = FakeWebhook()
        spec_changed = give_rollbacks_a_short_deadline(config, webhook.url)
        began = time.monotonic()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
        stories = [
            pool.submit(a_bad_data_day_stops_only_the_runs_that_read_it, config),
            pool.submit(approval_is_asked_then_a_rejection_is_recorded, env),
            pool.submit(scheduled_dags_run_with_the_defaults_of_the_trigger_form, config),
        ]
        concurrent.futures.wait(stories, return_when=concurrent.futures.FIRST_EXCEPTION)
        pool.shutdown(wait=False, cancel_futures=True)  # a failed story is reported now; the others end with the stack
        failures = [story.exception() for story in stories if story.done() and story.exception()]
        if failures:
            raise ExceptionGroup("a story after the demo failed", failures)
        bad_run, landing_seconds = stories[0].result()
        stories_done = time.monotonic()
        wait_until_parsed_since(config, "rollback_churn", spec_changed)
        rollback = a_rollback_runs_with_the_defaults_of_the_trigger_form(config)  # after the approval's run: it moves the champion
        print(f"the rollback's Deadline Alert: {the_deadline_alert_reached_the_webhook(webhook, rollback)}")
        webhook.close()
        print(
            f"after the demo: bad day (and its landing), approval and trigger-form defaults at once {stories_done - began:.0f} s; rollback {time.monotonic() - stories_done:.0f} s"
        )
        print(f"a partition landing -> the drift decision of the run it started: {landing_seconds:.1f} s (with the other stories running)")
        if chromium_binary() is None:
            browser_missing()
        else:
            print(f"the Models page in Chromium: {the_models_page_in_a_browser(config, rollback)}")
        # The first-try check again, over the bad-data day, the approval and the runs with defaults: only the bad day's run failed, and the check sees it.
        failed = failed_tries(
            AirflowClient(config.airflow_url, "admin", config.admin_password()),
            (*STORY_DAGS, "rollback_churn"),
        )
        assert [a for a in failed if a.run_id != bad_run] == []
        assert ("batch_score_churn", bad_run, "check_scoring_data") in [a.instance for a in failed]

        again = subprocess.run([*command, "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 3  # postgres, mlflow, airflow
        began = time.monotonic()
        serving_comes_back_after_stop_and_up(command, env, config)
        print(f"make stop, make up, serving restored: {time.monotonic() - began:.0f} s")
    finally:
        stop = subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert stop.returncode == 0, stop.stderr
    assert our_processes(str(state)) == []
