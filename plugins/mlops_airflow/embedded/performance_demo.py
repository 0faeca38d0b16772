"""``make performance-demo``: after ``make demo``, the champion judged on labels that arrive late, narrated.

1. Ten days of live traffic pass after ``make demo``'s (simulated: the days from today on, as
   drifted as its last days): the champion was trained until today, and the monitor judges a
   champion only on days after its training window.
2. Outcomes arrive for the days whose labels are due (``performance.window_days`` days, ending
   ``label_delay_days`` before the last live day): the spec's ``labels_uri`` gets each day's
   ``customer_id`` and ``churned``, and the events of those days get the same outcomes in their
   target column (what a retrain learns from). They are not what the model learned: customers of
   those days churned for other reasons (the generator's concept drift, ``concept`` 1.0: the
   contract and support calls stop mattering, the west region starts to). The newest days have no
   labels yet.
3. The champion scores those days: ``batch_score_<model>`` runs for each (its ``partition_date`` Param).
4. ``performance_monitor_<model>`` runs for the last live day (its ``run_day`` Param).
5. Its findings, day by day: estimated against realized ROC AUC, prediction drift, concept drift;
   the verdict; and the retrain it started (``performance__<first day>__<end>``, its window ending
   where the outcomes do), which the demo waits for, and the decision on the version it trained.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from mlops_airflow.constants import BATCH_SCORE_DAG_PREFIX, CHAMPION_ALIAS, PERFORMANCE_MONITOR_DAG_PREFIX, RETRAIN_DAG_PREFIX
from mlops_airflow.embedded.config import StackConfig
from mlops_airflow.embedded.demo import DEMO_ROWS_PER_DAY, DRIFT_DAYS, DRIFTED_FEATURES, RUN_TIMEOUT, ensure_demo_data, registry_alias, stack_spec, version_tags
from mlops_airflow.embedded.release_demo import registry_version
from mlops_airflow.embedded.synthetic import DriftSettings
from mlops_airflow.hooks.airflow_api import AirflowApiError, AirflowClient

CHANGED_OUTCOMES = 1.0  # the generator's concept drift on the labelled days
LIVE_DAYS = 10  # the days after `make demo`'s, simulated: the champion's live life


def write_late_labels(spec: Any, days: list[dt.date], *, outcomes: DriftSettings | None) -> None:
    """The labels of ``days``' rows under ``performance.labels_uri``, generated with ``outcomes`` (the events' own
    drift settings, with a ``concept`` that changes the outcomes); and the same outcomes into those days' events,
    whose target column is what training learns from."""
    import pyarrow as pa

    from mlops_airflow.core.partitions import list_partition_files, read_window, write_partition
    from mlops_airflow.embedded.synthetic import ID_COLUMN, LABEL_COLUMN, LABELS_FILE, generate_day

    for day in days:
        # The same rows as the events of that day (a day is generated from its own seed); only the outcome differs.
        labels = generate_day(day, rows=DEMO_ROWS_PER_DAY, drift=outcomes)[[ID_COLUMN, LABEL_COLUMN]]
        write_partition(pa.Table.from_pandas(labels, preserve_index=False), spec.performance.labels_uri, day, LABELS_FILE)
        files = list_partition_files(spec.data.uri, day)
        if len(files) != 1:
            continue  # not the demo's one file a day: leave the events as they are
        events = read_window(spec.data.uri, day, day + dt.timedelta(days=1)).frame.drop(columns=["dt"])
        arrived = events[[ID_COLUMN]].merge(labels, on=ID_COLUMN, how="left")[LABEL_COLUMN]
        events[spec.target.column] = arrived.fillna(events[spec.target.column]).astype(events[spec.target.column].dtype).to_numpy()
        write_partition(pa.Table.from_pandas(events, preserve_index=False), spec.data.uri, day, files[0].rsplit("/", 1)[-1])


def unscored_days(spec: Any, days: list[dt.date], version: str) -> list[dt.date]:
    """The days among ``days`` without a predictions file written by ``version``."""
    from mlops_airflow.core.partitions import read_window

    missing = []
    for day in days:
        frame = read_window(spec.data.predictions_uri, day, day + dt.timedelta(days=1), columns=["model_version"]).frame
        if frame.empty or set(frame["model_version"].astype(str)) != {version}:
            missing.append(day)
    return missing


def day_lines(summary: dict[str, Any]) -> list[str]:
    """One line per day of a performance summary: estimated and realized ROC AUC, prediction shift, concept drift."""

    def auc(values: dict | None) -> str:
        return "   -  " if not values or values.get("roc_auc") is None else f"{values['roc_auc']:.3f}"

    lines = ["  day          rows  labelled  estimated AUC  realized AUC  prediction shift  concept drift"]
    for entry in summary.get("days", []):
        shift = entry.get("prediction_shift")
        concept = {True: "yes", False: "no", None: "-"}[entry.get("concept_drift")]
        lines.append(
            f"  {entry['day']}  {entry['predictions']:>5}  {entry['labelled']:>8}  {auc(entry.get('estimated')):>13}  "
            f"{auc(entry.get('realized')):>12}  {'-' if shift is None else f'{shift:.3f}':>16}  {concept:>13}"
        )
    return lines


def run_performance_demo(config: StackConfig, model: str = "churn", *, echo: Callable[[str], None] = print, today: dt.date | None = None) -> bool:
    from mlops_airflow.operators.performance import labelled_window

    password = config.admin_password()
    if password is None or registry_alias(config.mlflow_url, model, CHAMPION_ALIAS) is None:
        echo(f"No {model} champion on a running stack: run `make demo` first.")
        return False
    spec = stack_spec(config, model)
    if spec.performance is None:
        echo(f"{spec.source} has no performance section: nothing to judge {model} on.")
        return False
    client = AirflowClient(config.airflow_url, "admin", password)
    today = today or dt.datetime.now(dt.UTC).date()
    version = str(registry_alias(config.mlflow_url, model, CHAMPION_ALIAS)["version"])
    # The champion was trained until today: its live life is the days after, simulated here. The
    # monitor judges a champion only on days after its training window.
    run_day = today + dt.timedelta(days=LIVE_DAYS - 1)
    start, end = labelled_window(run_day, label_delay_days=spec.performance.label_delay_days, window_days=spec.performance.window_days)
    labelled = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    drift_start = today - dt.timedelta(days=DRIFT_DAYS)
    echo(f"== 1. {LIVE_DAYS} days of live traffic pass ({today}..{run_day}, simulated), as drifted as the last days of `make demo`")
    ensure_demo_data(config, model, today, run_day + dt.timedelta(days=1), drift_from=drift_start, echo=echo)
    echo(f"== 2. Labels arrive for {start}..{end - dt.timedelta(days=1)}, {spec.performance.label_delay_days} day(s) late; the newest days have none yet")
    echo("   customers of those days churned for other reasons than the model learned (contract and support calls stopped mattering)")
    outcomes = DriftSettings(start=drift_start, features=DRIFTED_FEATURES, concept=CHANGED_OUTCOMES)
    write_late_labels(spec, labelled, outcomes=outcomes)
    echo(f"data: wrote {len(labelled)} labels partitions under {spec.performance.labels_uri}, and the outcomes into those days' events")

    days = [start + dt.timedelta(days=i) for i in range((run_day - start).days + 1)]
    missing = unscored_days(spec, days, version)
    scorer = f"{BATCH_SCORE_DAG_PREFIX}{model}"
    echo(f"== 3. The champion v{version} scores the {len(missing)} day(s) it has not scored yet ({scorer}, its partition_date Param)")
    client.set_paused(scorer, False)
    runs = [client.trigger(scorer, conf={"partition_date": str(day)})["dag_run_id"] for day in missing]
    for run_id in runs:
        if client.wait_for_run(scorer, run_id, timeout=RUN_TIMEOUT)["state"] != "success":
            echo(f"{scorer} run {run_id} failed: see its log in the UI")
            return False

    monitor = f"{PERFORMANCE_MONITOR_DAG_PREFIX}{model}"
    client.wait_for_dag(monitor)
    client.set_paused(monitor, False)  # its scheduled run for yesterday finds nothing to judge: the champion was trained on those days
    run_id = client.trigger(monitor, conf={"run_day": str(run_day)})["dag_run_id"]
    echo(f"== 4. airflow: triggered {monitor} for run day {run_day} (run {run_id})")
    state = client.wait_for_run(monitor, run_id, timeout=RUN_TIMEOUT)["state"]
    summary = client.xcom(monitor, run_id, "measure_performance") or {}
    echo(f"{monitor} run {run_id}: {state.upper()}")
    echo(
        f"== 5. v{summary.get('champion_version')} on its predictions, labelled window {summary.get('labelled_start')}..{summary.get('labelled_end')} (end excluded)"
    )
    for line in day_lines(summary):
        echo(line)
    echo(f"verdict: {'DECAYED' if summary.get('decayed') else 'not decayed'}: {'; '.join(summary.get('reasons', []))}")
    if not summary.get("decayed"):
        return state == "success"
    retrain, retrain_run = f"{RETRAIN_DAG_PREFIX}{model}", summary.get("retrain_run_id")
    tasks = {t["task_id"]: t["state"] for t in client.task_instances(monitor, run_id)}
    echo(f"airflow: decide_retrain {tasks.get('decide_retrain')}, trigger_retrain {tasks.get('trigger_retrain')}: {retrain} run {retrain_run}")
    if (tasks.get("decide_retrain"), tasks.get("trigger_retrain")) == ("success", "skipped"):
        echo("  (the run existed: another run of the monitor judged the same window first; one retrain per window)")
    try:
        client.get_run(retrain, retrain_run)
    except AirflowApiError:
        echo(f"no {retrain} run {retrain_run}: see decide_retrain's log for why (a cooldown, a drift retrain in flight, or performance.retrain off)")
        return state == "success"
    client.set_paused(retrain, False)
    started = time.monotonic()
    finished = client.wait_for_run(retrain, retrain_run, timeout=RUN_TIMEOUT)
    echo(
        f"{retrain} run {retrain_run}: {finished['state'].upper()} in {time.monotonic() - started:.0f} s; its window ended {end}, its conf carries the summary"
    )
    after = registry_alias(config.mlflow_url, model, CHAMPION_ALIAS) or {}
    echo(f"the champion is v{after.get('version')} (was v{version})")
    retrained = (client.xcom(retrain, retrain_run, "train_model") or {}).get("version")
    if retrained:
        tags = version_tags(registry_version(config.mlflow_url, model, str(retrained)))
        echo(f"v{retrained}, trained on the window with the new outcomes: {tags.get('mlops.decision')} ({tags.get('mlops.decision.reasons')})")
        if tags.get("mlops.decision") != "promoted":
            echo("   no better model in these data yet: the champion stays, the decay stays on its metric, and the cooldown spaces the next retrain")
    return state == "success" and finished["state"] == "success"
