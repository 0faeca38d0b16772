"""FeatureDriftSensor: wait until production data drifts away from the champion's reference sample
(KS and chi-squared per feature, and a domain classifier over all of them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.constants import CHAMPION_ALIAS, DEFAULT_MLFLOW_CONN_ID
from mlops_airflow.observability.metrics import (
    DRIFT_DOMAIN_AUC,
    DRIFT_DOMAIN_P_VALUE,
    DRIFT_DRIFTED_FEATURES,
    DRIFT_KS_STAT,
    DRIFT_P_VALUE,
    DRIFT_TVD,
    gauge,
)
from mlops_airflow.utils.task_args import as_date, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.core.drift_windows import DriftCheck
    from mlops_airflow.specs import ModelSpec


def send_drift_metrics(spec: ModelSpec, check: DriftCheck) -> None:
    """``mlops.drift.<model>.<feature>.ks_stat`` / ``.p_value`` (``.tvd`` for categoricals), ``.domain_auc`` / ``.domain_p_value`` and ``.drifted_features``."""
    for feature in check.assessment.features:
        if feature.pvalue is None:
            continue
        if feature.test == "domain_classifier":
            gauge(DRIFT_DOMAIN_AUC, feature.statistic, model=spec.name)
            gauge(DRIFT_DOMAIN_P_VALUE, feature.pvalue, model=spec.name)
            continue
        effect = DRIFT_KS_STAT if feature.test == "ks" else DRIFT_TVD
        gauge(effect, feature.effect, model=spec.name, feature=feature.feature)
        gauge(DRIFT_P_VALUE, feature.pvalue, model=spec.name, feature=feature.feature)
    gauge(DRIFT_DRIFTED_FEATURES, len(check.assessment.drifted_features), model=spec.name)


def record_drift_history(hook: Any, run_id: str, check: DriftCheck, log: Any) -> None:
    """Each feature's p-value and effect on the champion's run, for the Models page; a failure to record is only a warning."""
    from mlflow.exceptions import MlflowException

    from mlops_airflow.core.drift_windows import history_metrics

    try:
        hook.log_day_metrics(run_id, history_metrics(check), measured_at=dt.datetime.now(dt.UTC))
    except (MlflowException, OSError) as err:
        log.warning("The drift history of run %s was not recorded (the decision does not need it): %s", run_id, err)


class FeatureDriftSensor(FailFastTemplates, BaseSensorOperator):
    """
    Succeed, returning the drift summary, when the current window drifts from the champion's reference sample.

    The current window is the ``drift.window_days`` days before ``window_end``; each feature
    is tested against the reference sample logged with the ``champion`` version's training
    run (KS for numeric, chi-squared for categorical features, Benjamini-Hochberg across
    them, the spec's effect floor and minimum sample size). The statistics run here, on the
    worker. Without drift the sensor defers to the triggerer until a newer partition lands
    (``NewPartitionTrigger`` lists folders, nothing more), then tests the window ending at
    that partition. No drift by ``timeout``: the task ends skipped, not failed. With
    ``wait_for_new_partitions=False`` (a spec whose data asset is watched) it checks once and,
    without drift, ends skipped at once: the watcher starts the next run when the next
    partition lands. With no champion there is nothing to compare with, and it is skipped too.

    On drift the XCom is the summary (features, statistics, the window, the onset and the
    retrain run id); statsd gets ``mlops.drift.<model>.<feature>.ks_stat`` / ``.p_value``,
    ``mlops.drift.<model>.domain_auc`` / ``.domain_p_value`` and ``mlops.drift.<model>.drifted_features``
    (the classifier's ``(all features)`` counted among them) on every check.

    :param spec_path: path of the model spec YAML.
    :param window_end: the day after the current window (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    :param data_conn_id: connection for the object store, if it needs one.
    :param deferrable: wait on the triggerer (the default) rather than in poke/reschedule mode.
    :param check_interval: how often the triggerer lists the data for a new partition.
    :param wait_for_new_partitions: without drift, wait for a newer partition (until ``timeout``); ``False``: check once.
    """

    template_fields: Sequence[str] = ("window_end",)

    def __init__(
        self,
        *,
        spec_path: str,
        window_end: str,
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        data_conn_id: str | None = None,
        deferrable: bool = True,
        check_interval: dt.timedelta = dt.timedelta(minutes=15),
        wait_for_new_partitions: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.window_end = window_end
        self.mlflow_conn_id = mlflow_conn_id
        self.data_conn_id = data_conn_id
        self.deferrable = deferrable
        self.check_interval = check_interval
        self.wait_for_new_partitions = wait_for_new_partitions

    # -- one check -----------------------------------------------------------------------------

    def check(self, window_end: dt.date) -> dict[str, Any] | None:
        """Test the window ending at ``window_end``: the summary on drift (as XCom, :class:`~mlops_airflow.core.payloads.DriftSummary`), else ``None``."""
        from mlops_airflow.core.drift_windows import check_window, summary, summary_table
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.stats.ks import DriftInputError

        spec = load_task_spec(self.spec_path)
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        champion = hook.get_version_by_alias(spec.registered_model_name, CHAMPION_ALIAS)
        if champion is None:
            raise AirflowSkipException(f"{spec.registered_model_name} has no {CHAMPION_ALIAS!r} version: there is no reference to measure drift against")
        reference = hook.load_reference_sample(champion.run_id)
        try:
            check = check_window(reference, spec, window_end)
        except DriftInputError as err:
            raise AirflowFailException(f"drift of {spec.name} over the window ending {window_end} cannot be measured: {err}") from err
        send_drift_metrics(spec, check)
        record_drift_history(hook, champion.run_id, check, self.log)
        self.log.info(
            "Drift of %s v%s, window %s..%s (%d rows) vs its reference sample (%d rows):\n%s",
            spec.name,
            champion.version,
            check.window_start,
            check.window_end,
            check.rows,
            len(reference),
            summary_table(check),
        )
        if not check.assessment.tested:
            self.log.info("Too few rows to test any feature (minimum %d per feature)", spec.drift.min_samples)
            return None
        if not check.drifted:
            return None
        result = summary(check, spec, champion.version)
        self.log.info("Drift in %s since %s", ", ".join(result.drifted_features), result.onset)
        return result.to_xcom()

    # -- poke / reschedule mode ------------------------------------------------------------------

    def poke(self, context: Context) -> PokeReturnValue:
        result = self._announced(context, self.check(as_date(self.window_end, "window_end")))
        return PokeReturnValue(is_done=result is not None, xcom_value=result)

    def _announced(self, context: Context, result: dict[str, Any] | None) -> dict[str, Any] | None:
        """``result``; a drift found is described on the task's drift asset outlet (its event once the task succeeds)."""
        if result is not None:
            from mlops_airflow.assets import describe_outlet, drift_asset

            extra = {key: result.get(key) for key in ("onset", "window_end", "drifted_features", "champion_version")}
            describe_outlet(context, drift_asset(load_task_spec(self.spec_path).name), extra)
        return result

    # -- deferrable mode -------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        if not self.wait_for_new_partitions:
            # The data asset's watcher starts the next run when the next partition lands: waiting here would only hold the DAG's one run.
            result = self._announced(context, self.check(as_date(self.window_end, "window_end")))
            if result is None:
                raise AirflowSkipException("no drift in the window; the next partition that lands starts the next check")
            return result
        if not self.deferrable:
            return super().execute(context)
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.timeout)
        return self._check_or_defer(context, as_date(self.window_end, "window_end"), deadline)

    def execute_complete(self, context: Context, event: dict[str, Any], deadline: str) -> Any:
        if event.get("status") == "timeout":
            raise AirflowSkipException(f"no drift by the sensor's timeout ({self.timeout:.0f} s)")
        newest = as_date(event["day"], "day")
        return self._check_or_defer(context, newest + dt.timedelta(days=1), dt.datetime.fromisoformat(deadline))

    def _check_or_defer(self, context: Context, window_end: dt.date, deadline: dt.datetime) -> Any:
        result = self._announced(context, self.check(window_end))
        if result is not None:
            return result
        if dt.datetime.now(dt.UTC) >= deadline:
            raise AirflowSkipException(f"no drift by the sensor's timeout ({self.timeout:.0f} s)")
        from mlops_airflow.triggers.partitions import NewPartitionTrigger

        spec = load_task_spec(self.spec_path)
        last_day = window_end - dt.timedelta(days=1)
        self.log.info("No drift; waiting on the triggerer for a partition after %s (until %s)", last_day, deadline.isoformat())
        self.defer(
            trigger=NewPartitionTrigger(
                base_uri=spec.data.uri,
                after_day=last_day.isoformat(),
                deadline=deadline.isoformat(),
                poll_interval=self.check_interval.total_seconds(),
                conn_id=self.data_conn_id,
            ),
            method_name="execute_complete",
            kwargs={"deadline": deadline.isoformat()},
        )


# Its name until the re-layout, from when it ran the KS test only: DAGs that import it keep working.
KSDriftSensor = FeatureDriftSensor
