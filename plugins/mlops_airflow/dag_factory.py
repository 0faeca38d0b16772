"""Build the DAGs of every model spec: retrain, drift monitor, batch score, rollback, and performance monitor where the spec has labels.

DAG files call these at parse time, so everything here is cheap: YAML and Airflow
objects only; operators import their heavy libraries when they run.

Over 400 lines because it holds the five DAG shapes side by side: each reads as one task graph.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from pathlib import Path

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, CronTriggerTimetable, Param, chain

from mlops_airflow.assets import champion_alias, data_asset, drift_asset, predictions_asset
from mlops_airflow.constants import (
    BATCH_SCORE_DAG_PREFIX,
    DRIFT_MONITOR_DAG_PREFIX,
    PERFORMANCE_MONITOR_DAG_PREFIX,
    RETRAIN_DAG_PREFIX,
    ROLLBACK_DAG_PREFIX,
    TrainingBackend,
)
from mlops_airflow.observability.alerts import FailureAlert
from mlops_airflow.settings import retry_delay, specs_dir
from mlops_airflow.specs import ModelSpec, ModelSpecError, load_spec_folder

log = logging.getLogger(__name__)

# The run's window, rendered at run time: a manual run's Params win; a scheduled run uses its
# data interval. A run triggered without a logical date (the UI's form left empty, or
# `"logical_date": null` through the REST API) has no data interval, and its context has no
# data_interval_* keys at all: such a run ends its window on the day it was asked to run, so
# its one day is the day before, the latest complete one.
_RUN_END = "(data_interval_end | default(none) or dag_run.run_after) | ds"
_RUN_DAY = f"macros.ds_add({_RUN_END}, -1)"  # the day before the window end: a complete one, also for a zero-length interval
_NO_INTERVAL = "without one (triggered with no logical date),"
DEFAULT_RETRIES = 2
# The first retry waits settings.retry_delay() (2 minutes unless set); later ones double (exponential backoff) up to 30 minutes.

_PREFIXES = {
    "retrain": RETRAIN_DAG_PREFIX,
    "drift_monitor": DRIFT_MONITOR_DAG_PREFIX,
    "batch_score": BATCH_SCORE_DAG_PREFIX,
    "rollback": ROLLBACK_DAG_PREFIX,
    "performance_monitor": PERFORMANCE_MONITOR_DAG_PREFIX,
}
_NOT_IN_DAG_ID = re.compile(r"[^a-zA-Z0-9_.-]+")


def dags_of_every_spec(kind: str, build: Callable[..., DAG | None], doc_md: str | None = None) -> dict[str, DAG]:
    """A DAG file's DAGs: ``build(spec)`` for every spec that loads (``None``: this spec has no DAG of this kind),
    an invalid-spec DAG for every one that does not.

    Each spec is loaded on its own, so a bad file takes down only its own model's DAGs: they
    stay visible, tagged ``invalid-spec``, with the file and field in their description, and
    fail at once when triggered. The error is also logged by the DAG processor.
    """
    folder = load_spec_folder(specs_dir())
    dags = {}
    errors = list(folder.errors)
    _SHARED_WATCH.update(shared_watch_intervals(folder.specs))
    try:
        for spec in folder.specs:
            try:
                dag = build(spec, doc_md=doc_md)
            except Exception as err:  # a spec the loader let through but the DAG refuses: still only this model's DAGs
                errors.append(ModelSpecError(spec.source, "<dag>", f"{type(err).__name__}: {err}"))
                continue
            if dag is not None:
                dags[dag.dag_id] = dag
    finally:
        _SHARED_WATCH.clear()  # a DAG built on its own (a test, a script) watches at its spec's own interval
    for error in errors:
        log.error("model spec refused, its DAGs only fail: %s", error)
        dag = invalid_spec_dag(kind, error, taken=set(dags))
        dags[dag.dag_id] = dag
    return dags


def invalid_spec_dag(kind: str, error: ModelSpecError, *, taken: set[str] = frozenset()) -> DAG:
    """``<kind>_<file stem>``: a DAG whose one task fails with ``error`` (the id gets ``_invalid_spec`` if a valid spec has it)."""
    from mlops_airflow.operators.invalid_spec import InvalidSpecOperator

    stem = _NOT_IN_DAG_ID.sub("_", Path(error.source).stem)[:100] or "unnamed"
    dag_id = f"{_PREFIXES[kind]}{stem}"
    if dag_id in taken:
        dag_id = f"{dag_id}_invalid_spec"
    message = str(error)
    with DAG(
        dag_id=dag_id,
        description=f"INVALID SPEC: {message}"[:1000],
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        tags=["mlops", kind, "invalid-spec"],
        doc_md=f"**This model's spec was refused; its DAGs cannot run until the file is fixed.**\n\n```\n{message}\n```",
    ) as dag:
        InvalidSpecOperator(task_id="spec_is_invalid", error=message)
    return dag


def _start_date(spec: ModelSpec) -> dt.datetime:
    day = spec.schedules.start_date
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _default_args(spec: ModelSpec) -> dict:
    return {
        "owner": spec.owner,
        "retries": DEFAULT_RETRIES,
        "retry_delay": retry_delay(),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
        # Every failed try posts to the alert webhook (connection mlops_alerts); never raises.
        "on_failure_callback": FailureAlert(),
    }


def _tags(spec: ModelSpec, kind: str) -> list[str]:
    return sorted({"mlops", kind, f"model:{spec.name}", *spec.tags})


def _doc(spec: ModelSpec, doc_md: str | None) -> str:
    header = f"**Model `{spec.name}`** — {spec.description or 'no description'}  \nSpec: `{spec.source}`"
    return f"{header}\n\n{doc_md or ''}".strip()


def _deadline(minutes: float | None):
    """A Deadline Alert: a run not finished ``minutes`` after it was queued is alerted (the failure alerts' channel); none without minutes.

    Queued, not the logical date: a run from the trigger form has no logical date.
    """
    if minutes is None:
        return None
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=dt.timedelta(minutes=minutes),
        callback=AsyncCallback("mlops_airflow.observability.alerts.deadline_missed", kwargs={"limit_minutes": minutes}),
    )


def release_wait_minutes(spec: ModelSpec) -> float:
    """The longest a release may rightly wait on top of its work: a canary's steps, an A/B test, and a person's decision after them."""
    release = spec.serving.release
    if release.strategy == "blue_green":
        return 0.0
    minutes = release.decision_timeout_hours * 60.0
    if release.strategy == "canary":
        minutes += len(release.canary.steps) * release.canary.step_seconds / 60.0
    elif release.strategy == "ab":
        minutes += release.ab.duration_minutes
    return minutes


def retrain_deadline_minutes(spec: ModelSpec) -> float | None:
    """The retrain's deadline: ``schedules.retrain_deadline_minutes``, plus the approval's timeout when the spec requires approval,
    plus what its release may wait (:func:`release_wait_minutes`): a deadline is for a run that is stuck, not one waiting rightly."""
    minutes = spec.schedules.retrain_deadline_minutes
    if minutes is None:
        return None
    approval = spec.promotion.approval_timeout_hours * 60.0 if spec.promotion.require_approval else 0.0
    return minutes + approval + release_wait_minutes(spec)


def rollback_deadline_minutes(spec: ModelSpec) -> float | None:
    """The rollback's deadline: ``schedules.rollback_deadline_minutes`` plus what its release may wait."""
    minutes = spec.schedules.rollback_deadline_minutes
    return None if minutes is None else minutes + release_wait_minutes(spec)


def _common(spec: ModelSpec, kind: str, doc_md: str | None) -> dict:
    """What every DAG of a model shares: static start date, no catchup, retries, owner, tags, docs."""
    return {
        "start_date": _start_date(spec),
        "catchup": False,
        "default_args": _default_args(spec),
        "tags": _tags(spec, kind),
        "doc_md": _doc(spec, doc_md),
    }


def _wait_and_check_day(spec: ModelSpec, day_param: str, *, wait_task_id: str, check_task_id: str, wait_timeout: dt.timedelta):
    """Wait (holding no worker slot) for one day's partition, then check it against the contract."""
    from mlops_airflow.operators.data_checks import DataContractCheckOperator
    from mlops_airflow.sensors.partitions import PartitionSensor

    day = f"{{{{ params.{day_param} or {_RUN_DAY} }}}}"
    wait = PartitionSensor(
        task_id=wait_task_id, base_uri=spec.data.uri, start=day, mode="reschedule", poke_interval=dt.timedelta(minutes=5), timeout=wait_timeout
    )
    check = DataContractCheckOperator(
        task_id=check_task_id,
        spec_path=spec.source,
        interval_start=day,
        interval_end=f"{{{{ macros.ds_add(params.{day_param} or {_RUN_DAY}, 1) }}}}",
        inlets=[watched_data_asset(spec)],
    )
    wait >> check
    return day, check


def _training_operator(spec: ModelSpec, **kwargs):
    """The training task for the spec's backend; each backend's module is imported only when used."""
    backend = spec.training.backend
    if backend is TrainingBackend.KUBERNETES:
        from mlops_airflow.operators.training_pod import ModelTrainingPodOperator, training_pod_kwargs

        return ModelTrainingPodOperator(**kwargs, **training_pod_kwargs(spec))
    if backend is TrainingBackend.DOCKER:
        from mlops_airflow.operators.training_docker import ModelTrainingDockerOperator

        compute = spec.training.compute
        return ModelTrainingDockerOperator(
            **kwargs,
            image=compute.image,
            gpus=compute.gpus,
            mem_limit=compute.memory.replace("Gi", "g").replace("Mi", "m"),
            execution_timeout=dt.timedelta(minutes=spec.training.timeout_minutes),
        )
    from mlops_airflow.operators.training_local import LocalModelTrainingOperator

    return LocalModelTrainingOperator(**kwargs, execution_timeout=dt.timedelta(minutes=spec.training.timeout_minutes))


def _release_gates(spec: ModelSpec) -> list:
    """Between the smoke test and the switch: the strategy's analysis and a person's decision when it is inconclusive; none for blue-green."""
    release = spec.serving.release
    if release.strategy == "blue_green":
        return []
    from mlops_airflow.operators.release_strategies import ABTestOperator, CanaryReleaseOperator, ReleaseDecisionOperator, ShadowReplayOperator

    # A verdict fails without retries (AirflowFailException). A fault (the log or the registry unreachable)
    # retries as every task does: the interrupted canary or A/B test has put all traffic back on the old
    # colour first, so the retry starts again from its first step and nothing is left split while it waits.
    if release.strategy == "canary":
        canary = release.canary
        per_step = canary.step_seconds + spec.serving.inference_log.flush_seconds + 120
        timeout = dt.timedelta(seconds=len(canary.steps) * per_step + 300)
        analyse = CanaryReleaseOperator(task_id="canary_release", spec_path=spec.source, execution_timeout=timeout)
    elif release.strategy == "ab":
        held = dt.timedelta(minutes=release.ab.duration_minutes, seconds=spec.serving.inference_log.flush_seconds + 300)
        analyse = ABTestOperator(task_id="ab_test", spec_path=spec.source, execution_timeout=held)
    else:
        analyse = ShadowReplayOperator(task_id="shadow_replay", spec_path=spec.source, execution_timeout=dt.timedelta(minutes=60))
    decide = ReleaseDecisionOperator(
        task_id="decide_release",
        spec_path=spec.source,
        analysis_task_id=analyse.task_id,
        response_timeout=dt.timedelta(hours=release.decision_timeout_hours),
    )
    return [analyse, decide]


def _release_tasks(spec: ModelSpec):
    """deploy_idle_color -> smoke_test_idle -> [canary_release, shadow_replay or ab_test -> decide_release] -> switch_traffic ->
    verify_live -> scale_down_previous, and rollback_release when any step of the release fails. Returns (first task, rollback task)."""
    from mlops_airflow.operators.serving import (
        DeployIdleColorOperator,
        RollbackReleaseOperator,
        ScaleDownPreviousOperator,
        SmokeTestIdleOperator,
        SwitchTrafficOperator,
        VerifyLiveOperator,
    )

    serving = spec.serving
    deploy = DeployIdleColorOperator(
        task_id="deploy_idle_color", spec_path=spec.source, execution_timeout=dt.timedelta(seconds=serving.ready_timeout_seconds + 300)
    )
    smoke = SmokeTestIdleOperator(task_id="smoke_test_idle", spec_path=spec.source)
    gates = _release_gates(spec)
    # After a gate, switch_traffic runs when nobody needed to decide (decide_release skipped).
    switch = SwitchTrafficOperator(task_id="switch_traffic", spec_path=spec.source, trigger_rule="none_failed" if gates else "all_success")
    verify = VerifyLiveOperator(task_id="verify_live", spec_path=spec.source)
    drain = ScaleDownPreviousOperator(task_id="scale_down_previous", spec_path=spec.source, drain=dt.timedelta(seconds=serving.drain_seconds))
    # Moves aliases: through the promotion pool, like every alias move (and under the registry lock).
    rollback = RollbackReleaseOperator(
        task_id="rollback_release",
        spec_path=spec.source,
        trigger_rule="one_failed",
        pool=spec.promotion.pool,
        outlets=[champion_alias(spec.name)],  # an event only when it restored the previous champion
    )
    chain(deploy, smoke, *gates, switch, verify, drain)
    [deploy, smoke, *gates, switch, verify] >> rollback
    return deploy, rollback


def build_retrain_dag(spec: ModelSpec, doc_md: str | None = None) -> DAG:
    """``retrain_<model>``: train on the window ending at the run's data interval end, evaluate, promote."""
    from mlops_airflow.operators.approval import PromotionApprovalOperator
    from mlops_airflow.operators.backfill import BackfillScoresOperator
    from mlops_airflow.operators.data_checks import DataContractCheckOperator
    from mlops_airflow.operators.evaluation import EvaluateChallengerOperator
    from mlops_airflow.operators.registry import PromoteChampionOperator

    with DAG(
        dag_id=f"{RETRAIN_DAG_PREFIX}{spec.name}",
        description=f"Retrain {spec.name}; promote the challenger when the evidence says so",
        schedule=CronTriggerTimetable(spec.schedules.retrain, timezone="UTC") if spec.schedules.retrain else None,
        max_active_runs=1,
        deadline=_deadline(retrain_deadline_minutes(spec)),
        **_common(spec, "retrain", doc_md),
        params={
            "window_end": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Window end",
                description=f"Day after the last day of training data (YYYY-MM-DD). Empty: the run's data interval end; {_NO_INTERVAL} the day the run was asked for.",
            ),
            "window_days": Param(
                None,
                type=["null", "integer"],
                minimum=spec.training.validation_days + 1,
                title="Window length (days)",
                description=f"Days of data to train on. Empty: the spec's {spec.training.window_days}.",
            ),
            "reason": Param(
                "",
                type="string",
                title="Reason",
                description="Why this run was started; recorded on the MLflow run. Required with force_promote.",
            ),
            "force_promote": Param(
                False,
                type="boolean",
                title="Force promotion",
                description="Promote the challenger even if the gates say no. Needs a reason; your user name is recorded.",
            ),
            "require_approval": Param(
                spec.promotion.require_approval,
                type="boolean",
                title="Require approval",
                description="A person approves the promotion in the Airflow UI before the champion moves.",
            ),
            "drift": Param(
                None,
                type=["null", "object"],
                title="Drift summary",
                description="Set by drift_monitor: after the switch, the drifted days are re-scored by a backfill. Leave empty by hand.",
            ),
            "performance": Param(
                None,
                type=["null", "object"],
                title="Performance summary",
                description="Set by performance_monitor when the champion decayed on its labelled predictions; kept with the run. Leave empty by hand.",
            ),
        },
        render_template_as_native_obj=False,
    ) as dag:
        window_end = f"{{{{ params.window_end or {_RUN_END} }}}}"
        window_start = f"{{{{ macros.ds_add(params.window_end or {_RUN_END}, -(params.window_days or {spec.training.window_days})) }}}}"
        check = DataContractCheckOperator(
            task_id="check_training_data",
            spec_path=spec.source,
            interval_start=window_start,
            interval_end=window_end,
            check_label=True,
            inlets=[watched_data_asset(spec)],
        )
        train = _training_operator(
            spec,
            task_id="train_model",
            spec_path=spec.source,
            window_start=window_start,
            window_end=window_end,
            data_report_uri="{{ ti.xcom_pull(task_ids='check_training_data')['report_uri'] }}",
            # No reason given: the run type (scheduled, manual, ...), for every backend alike.
            reason="{{ params.reason or (dag_run.run_type.value | default(dag_run.run_type)) }}",
        )
        evaluate = EvaluateChallengerOperator(
            task_id="evaluate_challenger",
            spec_path=spec.source,
            window_end=window_end,
            challenger_version="{{ ti.xcom_pull(task_ids='train_model')['version'] }}",
        )
        # A spec that requires approval cannot be overridden by a run's conf; a run can ask for it.
        require_approval = f"{{{{ params.require_approval or {spec.promotion.require_approval} }}}}"
        approve = PromotionApprovalOperator(
            task_id="approve_promotion",
            require_approval=require_approval,
            force_promote="{{ params.force_promote }}",
            response_timeout=dt.timedelta(hours=spec.promotion.approval_timeout_hours),
        )
        promote = PromoteChampionOperator(
            task_id="promote_champion",
            spec_path=spec.source,
            window_end=window_end,
            require_approval=require_approval,
            four_eyes=spec.promotion.four_eyes,
            force_promote="{{ params.force_promote }}",
            reason="{{ params.reason }}",
            pool=spec.promotion.pool,
            outlets=[champion_alias(spec.name)],  # an event only when the champion moved
        )
        check >> train >> evaluate >> approve >> promote
        deploy, _ = _release_tasks(spec)
        promote >> deploy
        backfill = BackfillScoresOperator(
            task_id="backfill_scores",
            batch_score_dag_id=f"{BATCH_SCORE_DAG_PREFIX}{spec.name}",
            drift_monitor_dag_id=f"{DRIFT_MONITOR_DAG_PREFIX}{spec.name}",
            max_backfill_days=spec.drift.max_backfill_days,
        )
        dag.get_task("verify_live") >> backfill
    return dag


def drift_monitor_schedule(spec: ModelSpec):
    """The spec's cron, or'ed with the data asset and its watcher: a partition landing starts a run at once.

    ``drift.watch_interval_seconds`` 0 leaves the cron alone; a spec without a cron is then manual only.
    An asset-triggered run has no data interval: it checks the window ending the day it starts,
    as a run triggered by hand does (a partition of the current, incomplete day is not in it).
    """
    cron = CronDataIntervalTimetable(spec.schedules.drift_monitor, timezone="UTC") if spec.schedules.drift_monitor else None
    if not spec.drift.watch_interval_seconds:
        return cron
    from airflow.sdk import AssetOrTimeSchedule

    watched = watched_data_asset(spec)
    return AssetOrTimeSchedule(timetable=cron, assets=watched) if cron is not None else [watched]


# data asset name -> the watch interval its models share; set by dags_of_every_spec from the whole folder while it builds.
_SHARED_WATCH: dict[str, int] = {}


def shared_watch_intervals(specs) -> dict[str, int]:
    """Per data asset, the shortest ``drift.watch_interval_seconds`` of the specs that read it (0: none of them watches)."""
    shared: dict[str, int] = {}
    for spec in specs:
        try:
            name = data_asset(spec).name
        except Exception:  # noqa: S112 - a URI Airflow's Asset refuses fails that spec's own DAGs when they are built, not every model's
            continue
        seconds = spec.drift.watch_interval_seconds
        if seconds and (name not in shared or not shared[name] or seconds < shared[name]):
            shared[name] = seconds
        shared.setdefault(name, 0)
    return shared


def watched_data_asset(spec: ModelSpec) -> Asset:
    """The data asset with its watcher, the same in every DAG of every model that names it.

    Airflow keeps the watchers of the last definition of an asset it collects from a DAG file: a
    task's inlet without the watcher, or a second model on the same data with another interval,
    would drop or replace the schedule's. So models that read the same data share one watcher,
    at the shortest interval among them; a model that does not watch still names it, and its drift
    monitor is simply not scheduled on it.
    """
    name = data_asset(spec).name
    seconds = _SHARED_WATCH.get(name, spec.drift.watch_interval_seconds)
    if not seconds:
        return data_asset(spec)
    from airflow.sdk import AssetWatcher

    from mlops_airflow.triggers.partitions import PartitionLandedTrigger

    trigger = PartitionLandedTrigger(base_uri=name, poll_interval=seconds)
    return data_asset(spec, watchers=[AssetWatcher(name="partition_landed", trigger=trigger)])


def build_drift_monitor_dag(spec: ModelSpec, doc_md: str | None = None) -> DAG:
    """``drift_monitor_<model>``: check the current window, wait for drift, trigger a retrain."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    from mlops_airflow.operators.data_checks import DataContractCheckOperator
    from mlops_airflow.operators.drift import DriftReportOperator, DriftRetrainGateOperator
    from mlops_airflow.sensors.drift import FeatureDriftSensor
    from mlops_airflow.sensors.partitions import PartitionSensor

    drift = spec.drift
    with DAG(
        dag_id=f"{DRIFT_MONITOR_DAG_PREFIX}{spec.name}",
        description=f"Watch {spec.name}'s production data for drift; retrain when it drifts",
        schedule=drift_monitor_schedule(spec),
        max_active_runs=1,
        **_common(spec, "drift", doc_md),
        params={
            "window_end": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Window end",
                description=f"Day after the current window (YYYY-MM-DD); the window is the {drift.window_days} day(s) before it. Empty: the run's data interval end; {_NO_INTERVAL} the day the run was asked for.",
            ),
        },
    ) as dag:
        window_end = f"{{{{ params.window_end or {_RUN_END} }}}}"
        window_start = f"{{{{ macros.ds_add(params.window_end or {_RUN_END}, -{drift.window_days}) }}}}"
        wait = PartitionSensor(
            task_id="wait_for_current_data",
            base_uri=spec.data.uri,
            start=window_start,
            end=window_end,
            mode="reschedule",
            poke_interval=dt.timedelta(minutes=5),
            timeout=dt.timedelta(hours=2),
        )
        check = DataContractCheckOperator(
            task_id="check_current_data", spec_path=spec.source, interval_start=window_start, interval_end=window_end, inlets=[watched_data_asset(spec)]
        )
        detect = FeatureDriftSensor(
            task_id="detect_drift",
            spec_path=spec.source,
            window_end=window_end,
            timeout=drift.timeout_minutes * 60,
            check_interval=dt.timedelta(minutes=drift.check_interval_minutes),
            wait_for_new_partitions=not drift.watch_interval_seconds,  # watched: each landing starts a run of its own
            outlets=[drift_asset(spec.name)],  # succeeds only on drift
        )
        gate = DriftRetrainGateOperator(task_id="decide_retrain", spec_path=spec.source, sensor_task_id="detect_drift")
        trigger_retrain = TriggerDagRunOperator(
            task_id="trigger_retrain",
            trigger_dag_id=f"{RETRAIN_DAG_PREFIX}{spec.name}",
            trigger_run_id=gate.output["run_id"],
            conf=gate.output["conf"],
            logical_date=None,
            skip_when_already_exists=True,
            wait_for_completion=False,
        )
        report = DriftReportOperator(task_id="render_drift_report", spec_path=spec.source, sensor_task_id="detect_drift")
        wait >> check >> detect >> [gate, report]
        gate >> trigger_retrain
    return dag


def build_performance_monitor_dag(spec: ModelSpec, doc_md: str | None = None) -> DAG | None:
    """``performance_monitor_<model>``: the champion on live outcomes, a retrain when it decayed, and the A/B and shadow releases
    judged on theirs (with an inference log). None without ``performance``."""
    if spec.performance is None:
        return None
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    from mlops_airflow.operators.performance import PerformanceMonitorOperator, PerformanceRetrainGateOperator

    performance = spec.performance
    schedule = spec.schedules.performance_monitor
    with DAG(
        dag_id=f"{PERFORMANCE_MONITOR_DAG_PREFIX}{spec.name}",
        description=f"Measure {spec.name}'s champion on late labels (and estimate it before them); retrain when it decayed",
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC") if schedule else None,
        max_active_runs=1,
        **_common(spec, "performance", doc_md),
        params={
            "run_day": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Run day",
                description=(
                    f"The newest day of predictions to look at (YYYY-MM-DD); labels are judged over the {performance.window_days} day(s) "
                    f"ending {performance.label_delay_days} day(s) before it. Empty: the run's data interval start; {_NO_INTERVAL} the day before the run was asked for."
                ),
            ),
        },
    ) as dag:
        measure = PerformanceMonitorOperator(
            task_id="measure_performance", spec_path=spec.source, run_day=f"{{{{ params.run_day or {_RUN_DAY} }}}}", inlets=[predictions_asset(spec)]
        )
        gate = PerformanceRetrainGateOperator(task_id="decide_retrain", spec_path=spec.source, monitor_task_id=measure.task_id)
        trigger_retrain = TriggerDagRunOperator(
            task_id="trigger_retrain",
            trigger_dag_id=f"{RETRAIN_DAG_PREFIX}{spec.name}",
            trigger_run_id=gate.output["run_id"],
            conf=gate.output["conf"],
            logical_date=None,
            skip_when_already_exists=True,
            wait_for_completion=False,
        )
        measure >> gate >> trigger_retrain
        if spec.serving.inference_log.uri is not None:
            from mlops_airflow.operators.release_outcomes import ReleaseOutcomeOperator

            # Beside the measurement, not after it: a release's outcomes are judged even while there is no champion.
            ReleaseOutcomeOperator(task_id="judge_release_outcomes", spec_path=spec.source, run_day=f"{{{{ params.run_day or {_RUN_DAY} }}}}")
    return dag


def build_batch_score_dag(spec: ModelSpec, doc_md: str | None = None) -> DAG:
    """``batch_score_<model>``: score one day's partition with the champion."""
    from mlops_airflow.operators.scoring import BatchScoreOperator

    with DAG(
        dag_id=f"{BATCH_SCORE_DAG_PREFIX}{spec.name}",
        description=f"Score one day of {spec.name} data with the champion",
        schedule=CronDataIntervalTimetable(spec.schedules.batch_score, timezone="UTC") if spec.schedules.batch_score else None,
        max_active_runs=4,
        **_common(spec, "scoring", doc_md),
        params={
            "partition_date": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Partition date",
                description=f"Day to score. Empty: the run's data interval start; {_NO_INTERVAL} the day before the run was asked for.",
            )
        },
    ) as dag:
        partition_date, check = _wait_and_check_day(
            spec, "partition_date", wait_task_id="wait_for_partition", check_task_id="check_scoring_data", wait_timeout=dt.timedelta(hours=6)
        )
        check >> BatchScoreOperator(
            task_id="score_partition",
            spec_path=spec.source,
            partition_date=partition_date,
            inlets=[watched_data_asset(spec)],
            outlets=[predictions_asset(spec)],  # partition key: the day
        )
    return dag


def build_rollback_dag(spec: ModelSpec, doc_md: str | None = None) -> DAG:
    """``rollback_<model>``: manual only; put the previous champion back, and serve it."""
    from mlops_airflow.operators.registry import RestorePreviousChampionOperator

    with DAG(
        dag_id=f"{ROLLBACK_DAG_PREFIX}{spec.name}",
        description=f"Restore {spec.name}'s previous champion and switch live traffic to it",
        schedule=None,
        max_active_runs=1,
        deadline=_deadline(rollback_deadline_minutes(spec)),
        **_common(spec, "rollback", doc_md),
        params={"reason": Param("", type="string", title="Reason", description="Why the rollback was needed.")},
    ) as dag:
        restore = RestorePreviousChampionOperator(
            task_id="restore_previous_champion",
            registered_model_name=spec.registered_model_name,
            pool=spec.promotion.pool,
            outlets=[champion_alias(spec.name)],
        )
        deploy, _ = _release_tasks(spec)
        restore >> deploy
    return dag
