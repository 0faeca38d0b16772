"""After the drift sensor: decide whether to start a retrain, and render a report for people."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.constants import (
    CHAMPION_ALIAS,
    DEFAULT_MLFLOW_CONN_ID,
    DRIFT_ARTIFACT_DIR,
    RETRAIN_DAG_PREFIX,
    TAG_DRIFT_LAST_TRIGGER,
    TAG_PERFORMANCE_LAST_TRIGGER,
)
from mlops_airflow.core.partitions import parse_day
from mlops_airflow.exceptions import MlopsError
from mlops_airflow.utils.task_args import load_task_spec, read_payload
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.core.payloads import DriftSummary

ACTIVE_RUN_STATES = frozenset({"queued", "running"})
TRIGGER_GRACE = dt.timedelta(minutes=15)  # a recorded trigger whose run does not exist yet is still on its way


def _overlap(a_start: dt.date, a_end: dt.date, b_start: dt.date, b_end: dt.date) -> bool:
    """Whether the half-open day ranges ``[a_start, a_end)`` and ``[b_start, b_end)`` share a day."""
    return a_start < b_end and b_start < a_end


def cooldown_reason(last: dict[str, Any] | None, summary: DriftSummary, *, cooldown: dt.timedelta, now: dt.datetime, last_run_state: str | None) -> str | None:
    """Why a retrain for ``summary``'s window must not start now, or ``None`` when it may.

    A retrain for an overlapping window that is still queued or running blocks a new one;
    so does one triggered less than ``cooldown`` ago, whatever became of it.
    """
    if not last or not _overlap(parse_day(last["onset"]), parse_day(last["window_end"]), summary.onset, summary.window_end):
        return None
    if last["run_id"] == summary.retrain_run_id:
        return None  # the same window: the trigger is idempotent (skip_when_already_exists)
    if last_run_state in ACTIVE_RUN_STATES:
        return f"retrain {last['run_id']} for the overlapping window {last['onset']}..{last['window_end']} is still {last_run_state}"
    age = now - dt.datetime.fromisoformat(last["triggered_at"])
    if age < cooldown:
        return (
            f"retrain {last['run_id']} for the overlapping window {last['onset']}..{last['window_end']} "
            f"was triggered {age.total_seconds() / 3600:.1f} h ago (cooldown {cooldown.total_seconds() / 3600:.1f} h)"
        )
    return None


def last_run_state(ti: Any, dag_id: str, run_id: str, *, trigger: str = "drift") -> str | None:
    """The state of the retrain run a gate (``trigger``: drift or performance) last triggered; ``None`` when Airflow no longer has it.

    Any other error (the execution API down or failing) fails the try, so that Airflow asks
    again later: taken for "no run", it would let an overlapping retrain start.
    """
    from airflow.sdk.exceptions import AirflowRuntimeError

    try:
        return ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    except AirflowRuntimeError as err:
        detail = err.error.detail if isinstance(err.error.detail, dict) else {}
        if detail.get("status_code") == 404:  # the run was deleted
            return None
        raise MlopsError(f"cannot read the state of {dag_id} run {run_id}, which the last {trigger} trigger started: {err}") from err


def other_retrain_in_flight(ti: Any, dag_id: str, tags: dict[str, str], tag: str, trigger: str) -> str | None:
    """Why not to start a retrain while the one the other gate (``tag``, ``trigger``) last started is queued or running, or None."""
    if tag not in tags:
        return None
    try:
        record = json.loads(tags[tag])
        run_id, triggered_at = record["run_id"], dt.datetime.fromisoformat(record["triggered_at"])
    except (ValueError, KeyError, TypeError) as err:
        raise AirflowFailException(f"the registered model's tag {tag} is not a trigger record ({err}): fix or delete it") from err
    state = last_run_state(ti, dag_id, run_id, trigger=trigger)
    if state in ACTIVE_RUN_STATES:
        return f"retrain {run_id}, started by the {trigger} monitor, is still {state}"
    if state is None and dt.datetime.now(dt.UTC) - triggered_at < TRIGGER_GRACE:
        # The other gate records its trigger before its next task creates the run.
        return (
            f"the {trigger} monitor recorded retrain {run_id} {(dt.datetime.now(dt.UTC) - triggered_at).total_seconds():.0f} s ago, and it does not exist yet"
        )
    return None


class DriftRetrainGateOperator(FailFastTemplates, BaseOperator):
    """
    Turn the drift sensor's summary into the retrain to trigger, unless the cooldown says no.

    Skips (and with it the trigger) while a retrain for an overlapping drift window is
    queued or running, or was triggered less than ``drift.cooldown_hours`` ago. Otherwise it
    records this window on the registered model (tag ``mlops.drift.last_trigger``) and
    pushes ``run_id`` and ``conf`` (XCom keys) for ``TriggerDagRunOperator``: the run id is
    deterministic per drift window, and the conf sets the retrain's ``window_end``,
    ``reason`` and ``drift`` Params (the summary, with this run's id as ``monitor_run_id``).

    :param spec_path: path of the model spec YAML.
    :param sensor_task_id: the drift sensor, whose XCom is the summary.
    :param mlflow_conn_id: connection of the MLflow server.
    """

    def __init__(self, *, spec_path: str, sensor_task_id: str, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.sensor_task_id = sensor_task_id
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.payloads import DriftSummary
        from mlops_airflow.hooks.mlflow import MlflowHook

        spec = load_task_spec(self.spec_path)
        pulled = context["ti"].xcom_pull(task_ids=self.sensor_task_id)
        if not pulled:
            raise AirflowFailException(f"no drift summary from {self.sensor_task_id!r}")
        summary = read_payload(DriftSummary, pulled, f"the XCom of {self.sensor_task_id}")
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        tags = hook.get_registered_model_tags(spec.registered_model_name) or {}
        last = json.loads(tags[TAG_DRIFT_LAST_TRIGGER]) if TAG_DRIFT_LAST_TRIGGER in tags else None
        retrain_dag_id = f"{RETRAIN_DAG_PREFIX}{spec.name}"
        last_state = last_run_state(context["ti"], retrain_dag_id, last["run_id"]) if last else None
        reason = cooldown_reason(last, summary, cooldown=dt.timedelta(hours=spec.drift.cooldown_hours), now=dt.datetime.now(dt.UTC), last_run_state=last_state)
        reason = reason or other_retrain_in_flight(context["ti"], retrain_dag_id, tags, TAG_PERFORMANCE_LAST_TRIGGER, "performance")
        if reason:
            raise AirflowSkipException(f"not starting a retrain for the drift since {summary.onset}: {reason}")
        record = {
            "run_id": summary.retrain_run_id,
            "onset": summary.onset.isoformat(),
            "window_end": summary.window_end.isoformat(),
            "triggered_at": dt.datetime.now(dt.UTC).isoformat(),
            "dag_run": context["dag_run"].run_id,
        }
        hook.set_registered_model_tag(spec.registered_model_name, TAG_DRIFT_LAST_TRIGGER, json.dumps(record))
        features = ", ".join(summary.drifted_features)
        conf = {
            "window_end": summary.window_end.isoformat(),
            "reason": f"drift in {features} since {summary.onset} (window {summary.window_start}..{summary.window_end})",
            # The run whose sensor recorded this drift: the backfill re-scores only the days it recorded.
            "drift": {**summary.to_xcom(), "monitor_run_id": context["dag_run"].run_id},
        }
        self.log.info("Triggering %s run %s: %s", retrain_dag_id, record["run_id"], conf["reason"])
        # Under their own keys too, so the trigger takes them natively: gate.output["run_id"], gate.output["conf"].
        context["ti"].xcom_push(key="run_id", value=record["run_id"])
        context["ti"].xcom_push(key="conf", value=conf)
        return {"run_id": record["run_id"], "conf": conf}


class DriftReportOperator(FailFastTemplates, BaseOperator):
    """
    An Evidently HTML drift report of the window the sensor tested, logged on the champion's run.

    For people, off the hot path: it runs beside the retrain trigger, and a report that
    cannot be rendered is a warning in this log, never a failure. The artifact is
    ``drift/<dag run id>.html`` on the ``champion`` version's training run.

    :param spec_path: path of the model spec YAML.
    :param sensor_task_id: the drift sensor, whose XCom is the summary.
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ()

    def __init__(self, *, spec_path: str, sensor_task_id: str, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.sensor_task_id = sensor_task_id
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> str | None:
        try:
            return self.render(context)
        except Exception:  # a report is for people; it never fails the monitor
            self.log.warning("Could not render the drift report", exc_info=True)
            return None

    def render(self, context: Context) -> str | None:
        import tempfile
        from pathlib import Path

        from mlops_airflow.core.drift_windows import drift_features
        from mlops_airflow.core.partitions import read_window
        from mlops_airflow.core.payloads import DriftSummary
        from mlops_airflow.hooks.mlflow import MlflowHook

        spec = load_task_spec(self.spec_path)
        if not spec.drift.report:
            self.log.info("drift.report is off in %s", spec.source)
            return None
        pulled = context["ti"].xcom_pull(task_ids=self.sensor_task_id)
        if not pulled:
            self.log.info("No drift summary: nothing to report")
            return None
        summary = DriftSummary.from_xcom(pulled)
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        champion = hook.get_version_by_alias(spec.registered_model_name, CHAMPION_ALIAS)
        if champion is None or str(champion.version) != summary.champion_version:
            self.log.info("The champion is no longer v%s: the report would compare the wrong reference", summary.champion_version)
            return None
        numeric, categorical = drift_features(spec)
        reference = hook.load_reference_sample(champion.run_id)[[*numeric, *categorical]]
        current = read_window(spec.data.uri, summary.window_start, summary.window_end, columns=[*numeric, *categorical]).frame
        current = current[[*numeric, *categorical]]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{context['dag_run'].run_id.replace(':', '_').replace('/', '_')}.html"
            render_evidently_report(reference, current, numeric, categorical, path)
            hook.client.log_artifact(champion.run_id, str(path), DRIFT_ARTIFACT_DIR)
        uri = f"runs:/{champion.run_id}/{DRIFT_ARTIFACT_DIR}/{path.name}"
        self.log.info("Drift report logged: %s", uri)
        return uri


def render_evidently_report(reference, current, numeric: list[str], categorical: list[str], path) -> None:
    """Evidently's data drift preset with the same tests (KS, chi-squared), saved as HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(num_method="ks", cat_method="chisquare")])
    snapshot = report.run(Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(reference, data_definition=definition))
    snapshot.save_html(str(path))
