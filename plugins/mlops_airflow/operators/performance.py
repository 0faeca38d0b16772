"""The champion on live outcomes: measure it as labels arrive, and start a retrain when it has decayed.

Where it sits in the loop: ``batch_score_<model>`` writes the champion's predictions, the model
servers log its live answers, labels land late in their own partitions, and
``performance_monitor_<model>`` joins them
(:mod:`mlops_airflow.core.performance_monitoring`), records the figures and, on decay, triggers
``retrain_<model>`` through :class:`PerformanceRetrainGateOperator`.
"""

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
    PERFORMANCE_ARTIFACT_DIR,
    RETRAIN_DAG_PREFIX,
    TAG_DRIFT_LAST_TRIGGER,
    TAG_PERFORMANCE_LAST_TRIGGER,
    TAG_WINDOW_END,
    VALIDATION_SCORES_ARTIFACT,
)
from mlops_airflow.core.partitions import parse_day
from mlops_airflow.utils.task_args import as_date, load_task_spec, read_payload
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    import logging

    import pandas as pd
    from airflow.sdk import Context

    from mlops_airflow.core.payloads import PerformanceSummary
    from mlops_airflow.core.performance_monitoring import Baseline
    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.specs import ModelSpec


MAX_REASON_CHARS = 1000  # the retrain's reason Param, and the tag it becomes on the training run


def labelled_window(run_day: dt.date, *, label_delay_days: int, window_days: int) -> tuple[dt.date, dt.date]:
    """``[start, end)``: the ``window_days`` newest days up to ``run_day`` whose labels are due ``label_delay_days`` after them."""
    end = run_day + dt.timedelta(days=1 - label_delay_days)
    return end - dt.timedelta(days=window_days), end


def retrain_run_id(start: dt.date, end: dt.date) -> str:
    """One retrain per decayed window: the trigger is idempotent (``skip_when_already_exists``)."""
    return f"performance__{start}__{end}"


class PerformanceMonitorOperator(FailFastTemplates, BaseOperator):
    """
    Measure the champion on its live predictions: realized where labels arrived, estimated where not yet.

    Reads the champion's batch predictions and, where the model keeps an inference log, its answers
    through the live URL (keyed as :mod:`mlops_airflow.core.logged_predictions` says), from the
    first day of the labelled window (or the end of the champion's training window, its
    ``mlops.window_end`` tag, if later) to ``run_day``, the
    labels partitions of the labelled window (``performance.label_delay_days`` before ``run_day``
    and ``performance.window_days`` long), and the champion's validation scores
    (``reference/validation_scores.parquet`` on its training run). Only rows the current champion
    scored count: it is never judged on its predecessor's predictions, nor on the days it was
    trained or validated on. Records the summary as
    ``performance/<run_day>.json`` and as ``live.*`` metrics on the champion's run, and as statsd
    gauges; returns it (XCom). Skipped while there is no champion.

    :param spec_path: path of the model spec YAML.
    :param run_day: the newest day to look at (templated): its predictions, and the labels due by then.
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("run_day",)

    def __init__(self, *, spec_path: str, run_day: str, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.run_day = run_day
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.performance_monitoring import PerformanceInputError
        from mlops_airflow.hooks.mlflow import MlflowHook

        spec = load_task_spec(self.spec_path)
        if spec.performance is None:
            raise AirflowFailException(f"{spec.source} has no performance section: nothing to monitor")
        day = as_date(self.run_day, "run_day")
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        champion = hook.get_version_by_alias(spec.registered_model_name, CHAMPION_ALIAS)
        if champion is None:
            raise AirflowSkipException(f"{spec.registered_model_name} has no {CHAMPION_ALIAS!r} version yet: nothing to monitor")
        baseline = self._baseline(hook, champion.run_id, spec)
        # Its own training window is not the champion's live life: judged from the day after it.
        trained_until = champion.tags.get(TAG_WINDOW_END)
        try:
            judged_from = parse_day(trained_until) if trained_until else None
        except ValueError as err:
            raise AirflowFailException(f"{spec.registered_model_name} v{champion.version}'s tag {TAG_WINDOW_END} is not a day: {err}") from err
        try:
            summary = measure(spec, day, str(champion.version), baseline, log=self.log, judged_from=judged_from)
        except PerformanceInputError as err:
            raise AirflowFailException(str(err)) from err
        self._record(hook, spec, champion.run_id, summary)
        return summary.to_xcom()

    def _baseline(self, hook: MlflowHook, run_id: str, spec: ModelSpec) -> Baseline | None:
        """The champion's validation scores, or None for a champion trained before they were logged (no estimates, no drop judgement)."""
        from mlops_airflow.core.performance_monitoring import PerformanceInputError, baseline_from_frame

        frame = hook.load_validation_scores(run_id)  # an MLflow error fails the try: Airflow retries it
        if frame is None:
            self.log.warning("The champion's run %s has no %s: no estimates and no drop from a baseline are judged", run_id, VALIDATION_SCORES_ARTIFACT)
            return None
        try:
            return baseline_from_frame(frame, classes=spec.target.classes)
        except PerformanceInputError as err:
            raise AirflowFailException(f"the champion's {VALIDATION_SCORES_ARTIFACT}: {err}") from err

    def _record(self, hook: MlflowHook, spec: ModelSpec, run_id: str, summary: PerformanceSummary) -> None:
        from mlops_airflow.observability.metrics import (
            PERFORMANCE_DECAYED,
            PERFORMANCE_ESTIMATED,
            PERFORMANCE_LABELLED_ROWS,
            PERFORMANCE_PREDICTION_SHIFT,
            PERFORMANCE_REALIZED,
            gauge,
        )

        hook.log_dict(run_id, summary.to_xcom(), f"{PERFORMANCE_ARTIFACT_DIR}/{summary.run_day}.json")
        hook.log_day_metrics(run_id, live_metrics(summary))
        metric, model = summary.verdict.get("metric", spec.performance.metric), spec.name
        gauge(PERFORMANCE_LABELLED_ROWS, summary.verdict.get("labelled_rows", 0), model=model)
        gauge(PERFORMANCE_DECAYED, int(summary.decayed), model=model)
        if summary.verdict.get("realized") is not None:
            gauge(PERFORMANCE_REALIZED, summary.verdict["realized"], model=model, metric=metric)
        newest = newest_scored_day(summary)
        for name, value in (newest.get("estimated") or {}).items():
            if value is not None:
                gauge(PERFORMANCE_ESTIMATED, value, model=model, metric=name)
        if newest.get("prediction_shift") is not None:
            gauge(PERFORMANCE_PREDICTION_SHIFT, newest["prediction_shift"], model=model)
        self.log.info(
            "%s v%s, labelled window %s..%s: %s", model, summary.champion_version, summary.labelled_start, summary.labelled_end, "; ".join(summary.reasons)
        )
        for entry in summary.days:
            self.log.info("  %s", _day_line(entry))


def _day_line(entry: dict[str, Any]) -> str:
    def figures(values: dict | None) -> str:
        return "-" if not values else ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in values.items())

    shift = entry.get("prediction_shift")
    return (
        f"{entry['day']}: {entry['predictions']} predictions ({entry.get('live_predictions', 0)} live), {entry['labelled']} labelled; realized {figures(entry.get('realized'))}; "
        f"estimated {figures(entry.get('estimated'))}; prediction shift {'-' if shift is None else f'{shift:.3f}'}; concept drift {entry.get('concept_drift')}"
    )


def judged_start(summary: PerformanceSummary) -> dt.date:
    """The first labelled day the verdict covers: the window's, or a later one where the champion's training window ended."""
    first = dt.date.fromisoformat(summary.days[0]["day"]) if summary.days else summary.labelled_start
    return max(summary.labelled_start, first)


def newest_scored_day(summary: PerformanceSummary) -> dict[str, Any]:
    """The figures of the newest day the champion has scored (the run day's own batch score may not have run yet); empty if none."""
    return next((entry for entry in reversed(summary.days) if entry["predictions"]), {})


def live_metrics(summary: PerformanceSummary) -> list[tuple[str, float, dt.date]]:
    """Each day's figures as MLflow metrics on the champion's run, timestamped with the day they describe."""
    rows = []
    for entry in summary.days:
        day = dt.date.fromisoformat(entry["day"])
        for kind in ("realized", "estimated"):
            for name, value in (entry.get(kind) or {}).items():
                if value is not None:
                    rows.append((f"live.{kind}.{name}", value, day))
        if entry.get("prediction_shift") is not None:
            rows.append(("live.prediction_shift", entry["prediction_shift"], day))
        rows.append(("live.labelled_rows", float(entry["labelled"]), day))
    return rows


def live_predictions(spec: ModelSpec, day: dt.date, version: str, *, log: logging.Logger, key_dtype: Any = None) -> pd.DataFrame | None:
    """The champion's answers through the live URL on ``day``, as prediction rows (``dt``, the key, its score, ``model_version``).

    ``None`` when the model keeps no inference log. Keys are read as ``key_dtype`` (the labels'
    key type). Requests whose rows carry no usable key are counted in the log
    (:mod:`mlops_airflow.core.logged_predictions`): they cannot be joined to labels.
    """
    if spec.serving.inference_log.uri is None:
        return None
    from mlops_airflow.constants import PARTITION_KEY
    from mlops_airflow.core.logged_predictions import LOG_COLUMNS, SCORE, keys_like, logged_predictions, read_log_day
    from mlops_airflow.serving.inference_log import ROUTE_LIVE

    frame = read_log_day(spec, day, LOG_COLUMNS)
    if not frame.empty:
        frame = frame[(frame["route"] == ROUTE_LIVE) & (frame["version"].astype(str) == version)]
    key, score_column = spec.performance.key, f"probability_{spec.target.classes[-1]}"
    logged = keys_like(logged_predictions(frame, key=key), key, key_dtype)
    if logged.unkeyed_requests or logged.unmatched_requests:
        log.warning(
            "%s: %d live requests carry no %r column (nor are one row with an X-Request-Id) and %d answers do not hold one score per row: "
            "they cannot be joined to labels",
            day,
            logged.unkeyed_requests,
            key,
            logged.unmatched_requests,
        )
    return logged.frame.rename(columns={SCORE: score_column}).assign(model_version=version)[[PARTITION_KEY, key, score_column, "model_version"]]


def measure(
    spec: ModelSpec, run_day: dt.date, version: str, baseline: Baseline | None, *, log: logging.Logger, judged_from: dt.date | None = None
) -> PerformanceSummary:
    """Read the window's predictions, labels and segments and judge them (no MLflow, no Airflow context).

    :param judged_from: the first day to look at (the day the champion's training window ended):
        the days before it are ones the champion was trained or validated on.
    :raises PerformanceInputError: predictions and labels that cannot be joined (the message names the day).
    """
    import numpy as np
    import pandas as pd

    from mlops_airflow.constants import PARTITION_KEY
    from mlops_airflow.core.partitions import read_window
    from mlops_airflow.core.payloads import PerformanceSummary
    from mlops_airflow.core.performance_monitoring import LABEL, POSITIVE_SCORE, day_performance, finite_scores, join_labels, judge_decay, segment_metrics
    from mlops_airflow.stats.performance_estimation import EstimationInputError, ScoreCalibration

    performance = spec.performance
    start, end = labelled_window(run_day, label_delay_days=performance.label_delay_days, window_days=performance.window_days)
    first = min(start, run_day)
    if judged_from is not None and judged_from > first:
        log.info("Days before %s are in v%s's training window: not judged", judged_from, version)
        first = judged_from
    predictions = read_window(spec.data.predictions_uri, first, run_day + dt.timedelta(days=1)).frame
    if "model_version" in predictions.columns:
        others = int((predictions["model_version"].astype(str) != version).sum())
        if others:
            log.info("Leaving out %d predictions of other versions than the champion v%s", others, version)
        predictions = predictions[predictions["model_version"].astype(str) == version]
    labels = read_window(performance.labels_uri, start, end).frame
    # The live answers' keys (JSON: text or numbers) are read as the labels' (else the batch predictions') key type.
    key_dtype = next((frame[performance.key].dtype for frame in (labels, predictions) if performance.key in frame.columns and not frame.empty), None)
    calibration = None
    if baseline is not None:
        try:
            calibration = ScoreCalibration(baseline.scores, baseline.labels)
        except EstimationInputError as err:
            log.warning("No estimates: the validation scores cannot be calibrated (%s)", err)
    positive = spec.target.classes[1]
    score_column = f"probability_{positive}"
    days, joined = [], []
    for offset in range(max((run_day - first).days + 1, 0)):
        day = first + dt.timedelta(days=offset)
        scored = predictions[predictions[PARTITION_KEY] == day]
        live = live_predictions(spec, day, version, log=log, key_dtype=key_dtype)
        if live is not None and not live.empty:
            scored = pd.concat([scored, live], ignore_index=True)
        labelled = None
        if start <= day < end:
            day_labels = labels[labels[PARTITION_KEY] == day].drop(columns=[PARTITION_KEY])
            if not day_labels.empty and not scored.empty:
                labelled = join_labels(scored, day_labels, key=performance.key, target=spec.target.column, classes=spec.target.classes, day=day)
                joined.append(labelled)
        scores = finite_scores(scored[score_column], f"{day}: the predictions' {score_column}") if score_column in scored.columns else np.empty(0)
        days.append(day_performance(day, scores, labelled, baseline=baseline, calibration=calibration, live=0 if live is None else len(live)))
    window = pd.concat(joined, ignore_index=True) if joined else pd.DataFrame(columns=[LABEL, POSITIVE_SCORE])
    verdict = judge_decay(
        window[LABEL].to_numpy(dtype="int64"), window[POSITIVE_SCORE].to_numpy(dtype="float64"), baseline, performance, seed=spec.promotion.seed
    )
    segments = {}
    if spec.promotion.segments and not window.empty:
        features = read_window(spec.data.uri, start, end, columns=[performance.key, *spec.promotion.segments]).frame
        # By key and day: a key (a customer) may come back on other days, in another segment.
        segment_columns = features.drop_duplicates([performance.key, PARTITION_KEY])
        with_segments = window.merge(segment_columns, on=[performance.key, PARTITION_KEY], how="left")
        segments = segment_metrics(with_segments, spec.promotion.segments, performance.metric, spec.promotion.min_segment_rows)
    return PerformanceSummary(
        model=spec.name,
        champion_version=version,
        run_day=run_day,
        labelled_start=start,
        labelled_end=end,
        decayed=verdict.decayed,
        reasons=verdict.reasons,
        retrain_run_id=retrain_run_id(start, end),
        verdict=verdict.as_dict(),
        days=tuple(day.as_dict() for day in days),
        segments=segments,
    )


class PerformanceRetrainGateOperator(FailFastTemplates, BaseOperator):
    """
    Turn a decayed champion into the retrain to trigger, unless the guards say no.

    Skips (and with it the trigger) when the champion has not decayed, when ``performance.retrain``
    is off (the decay is in the summary, the log and the metrics), while the retrain it last started
    is queued or running, or less than ``performance.cooldown_hours`` after it, and while a retrain
    the drift monitor started is queued or running (or recorded and not yet created). Otherwise it
    records the trigger on the registered model (tag ``mlops.performance.last_trigger``) and pushes
    ``run_id`` (one per labelled window) and ``conf`` (``window_end``: the labelled window's end,
    ``reason`` and the ``performance`` summary) for ``TriggerDagRunOperator``.

    The champion a retrain promotes is judged only on days after its training window: it has no
    verdict until labels of its own live days arrive.

    :param spec_path: path of the model spec YAML.
    :param monitor_task_id: the task whose XCom is the performance summary.
    :param mlflow_conn_id: connection of the MLflow server.
    """

    def __init__(self, *, spec_path: str, monitor_task_id: str, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.monitor_task_id = monitor_task_id
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.payloads import PerformanceSummary
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.operators.drift import ACTIVE_RUN_STATES, last_run_state, other_retrain_in_flight

        spec = load_task_spec(self.spec_path)
        pulled = context["ti"].xcom_pull(task_ids=self.monitor_task_id)
        if not pulled:
            raise AirflowFailException(f"no performance summary from {self.monitor_task_id!r}")
        summary = read_payload(PerformanceSummary, pulled, f"the XCom of {self.monitor_task_id}")
        if not summary.decayed:
            raise AirflowSkipException(f"no decay: {'; '.join(summary.reasons)}")
        if not spec.performance.retrain:
            raise AirflowSkipException(f"decayed, but performance.retrain is off in {spec.source}: {'; '.join(summary.reasons)}")
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        tags = hook.get_registered_model_tags(spec.registered_model_name) or {}
        last = json.loads(tags[TAG_PERFORMANCE_LAST_TRIGGER]) if TAG_PERFORMANCE_LAST_TRIGGER in tags else None
        retrain_dag_id = f"{RETRAIN_DAG_PREFIX}{spec.name}"
        busy = other_retrain_in_flight(context["ti"], retrain_dag_id, tags, TAG_DRIFT_LAST_TRIGGER, "drift")
        if busy:
            raise AirflowSkipException(f"decayed, but {busy}")
        if last and last["run_id"] != summary.retrain_run_id:
            state = last_run_state(context["ti"], retrain_dag_id, last["run_id"], trigger="performance")
            if state in ACTIVE_RUN_STATES:
                raise AirflowSkipException(f"decayed, but retrain {last['run_id']} is still {state}")
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(last["triggered_at"])
            if age < dt.timedelta(hours=spec.performance.cooldown_hours):
                raise AirflowSkipException(
                    f"decayed, but retrain {last['run_id']} was triggered {age.total_seconds() / 3600:.1f} h ago "
                    f"(cooldown {spec.performance.cooldown_hours:g} h)"
                )
        record = {"run_id": summary.retrain_run_id, "triggered_at": dt.datetime.now(dt.UTC).isoformat(), "dag_run": context["dag_run"].run_id}
        hook.set_registered_model_tag(spec.registered_model_name, TAG_PERFORMANCE_LAST_TRIGGER, json.dumps(record))
        conf = {
            # The retrain's window ends where the outcomes do: the newer days have no labels yet.
            "window_end": summary.labelled_end.isoformat(),
            "reason": f"performance decay of v{summary.champion_version} over {judged_start(summary)}..{summary.labelled_end}: {'; '.join(summary.reasons)}"[
                :MAX_REASON_CHARS
            ],
            "performance": {**_without_days(summary), "monitor_run_id": context["dag_run"].run_id},
        }
        self.log.info("Triggering %s run %s: %s", retrain_dag_id, record["run_id"], conf["reason"])
        context["ti"].xcom_push(key="run_id", value=record["run_id"])
        context["ti"].xcom_push(key="conf", value=conf)
        return {"run_id": record["run_id"], "conf": conf}


def _without_days(summary: PerformanceSummary) -> dict[str, Any]:
    """The summary a retrain's conf carries: the verdict and segments, not every day's figures (those are on MLflow)."""
    value = summary.to_xcom()
    value.pop("days")
    return value
