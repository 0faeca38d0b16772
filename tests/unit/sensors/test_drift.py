"""FeatureDriftSensor against a real MLflow store and real partitions; the deferral with its trigger."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred
from helpers import DATA_END, DRIFT_START, register_champion_with_reference, task_context, write_drift_data, write_drift_spec

from mlops_airflow.sensors.drift import FeatureDriftSensor
from mlops_airflow.triggers.partitions import NewPartitionTrigger


def sensor(spec_path, window_end=DATA_END, **kwargs):
    kwargs.setdefault("timeout", 600)
    return FeatureDriftSensor(task_id="detect_drift", spec_path=spec_path, window_end=str(window_end), **kwargs)


def test_drift_returns_the_summary_and_sends_gauges(tmp_path, mlflow_store, statsd):
    write_drift_data(tmp_path / "data")
    version = register_champion_with_reference(mlflow_store)
    spec_path = write_drift_spec(tmp_path, tmp_path / "data", window_days=2, features=["monthly_charges", "support_calls", "contract"])
    result = sensor(spec_path).execute(task_context())
    assert result["champion_version"] == version
    assert result["onset"] == str(DRIFT_START)
    assert "monthly_charges" in result["drifted_features"]
    lines = statsd(9)  # 3 features x 2, the domain classifier's AUC and p-value, drifted_features
    assert f"mlops.drift.churn.drifted_features:{len(result['drifted_features'])}|g" in lines
    assert any(line.startswith("mlops.drift.churn.monthly_charges.ks_stat:0.") for line in lines)
    assert any(line.startswith("mlops.drift.churn.support_calls.p_value:") for line in lines)
    assert any(line.startswith("mlops.drift.churn.contract.tvd:") for line in lines)
    assert any(line.startswith("mlops.drift.churn.domain_auc:0.") for line in lines)
    # The check is also kept on the champion's run, dated by the window's last day, for the Models page.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store)
    run_id = client.get_model_version("churn", version).run_id
    history = client.get_metric_history(run_id, "drift.monthly_charges.p_value")
    assert [(m.step, m.value < 0.01) for m in history] == [((DATA_END - dt.timedelta(days=1) - dt.date(1970, 1, 1)).days, True)]
    assert {"drift.contract.effect", "drift.all_features.p_value", "drift.all_features.effect"} <= set(client.get_run(run_id).data.metrics)


def test_no_drift_defers_to_a_new_partition_trigger_and_a_timeout_skips(tmp_path, mlflow_store):
    write_drift_data(tmp_path / "data", drifted=False)
    register_champion_with_reference(mlflow_store)
    task = sensor(write_drift_spec(tmp_path, tmp_path / "data", window_days=2))
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(task_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, NewPartitionTrigger)
    assert trigger.after_day == str(DATA_END - dt.timedelta(days=1))
    assert deferred.value.method_name == "execute_complete"
    deadline = deferred.value.kwargs["deadline"]
    with pytest.raises(AirflowSkipException, match="no drift by the sensor's timeout"):
        task.execute_complete(task_context(), {"status": "timeout"}, deadline=deadline)
    # A new partition: the window moves to end after it, and is tested again on the worker.
    write_drift_data(tmp_path / "data", days=1, drifted=False)
    with pytest.raises(TaskDeferred) as again:
        task.execute_complete(task_context(), {"status": "new_partition", "day": str(DATA_END - dt.timedelta(days=1))}, deadline=deadline)
    assert again.value.kwargs["deadline"] == deadline


def test_without_a_timeout_it_checks_once_and_skips(tmp_path, mlflow_store):
    write_drift_data(tmp_path / "data", drifted=False)
    register_champion_with_reference(mlflow_store)
    with pytest.raises(AirflowSkipException, match="no drift"):
        sensor(write_drift_spec(tmp_path, tmp_path / "data", window_days=2), timeout=0).execute(task_context())


def test_without_a_champion_there_is_nothing_to_compare(tmp_path, mlflow_store):
    write_drift_data(tmp_path / "data")
    with pytest.raises(AirflowSkipException, match="no 'champion' version"):
        sensor(write_drift_spec(tmp_path, tmp_path / "data")).execute(task_context())


def test_an_all_missing_feature_fails_the_task(tmp_path, mlflow_store):
    import pyarrow as pa

    from mlops_airflow.core.partitions import write_partition
    from mlops_airflow.embedded.synthetic import generate_day

    register_champion_with_reference(mlflow_store)
    day = DATA_END - dt.timedelta(days=1)
    frame = generate_day(day, rows=600, seed=1)
    frame["days_since_last_login"] = None
    write_partition(pa.Table.from_pandas(frame, preserve_index=False), f"{tmp_path / 'data'}/events", day)
    with pytest.raises(AirflowFailException, match="feature 'days_since_last_login' has no finite value in the current sample"):
        sensor(write_drift_spec(tmp_path, tmp_path / "data")).execute(task_context())


def test_poke_mode_uses_the_same_check(tmp_path, mlflow_store):
    write_drift_data(tmp_path / "data")
    register_champion_with_reference(mlflow_store)
    result = sensor(write_drift_spec(tmp_path, tmp_path / "data", window_days=2), deferrable=False).poke(task_context())
    assert result.is_done
    assert result.xcom_value["onset"] == str(DRIFT_START)


def test_with_a_watched_data_asset_it_checks_once_and_does_not_wait(tmp_path, mlflow_store):
    """The watcher starts the next run when the next partition lands: waiting would only hold the DAG's one active run."""
    write_drift_data(tmp_path / "data", drifted=False)
    register_champion_with_reference(mlflow_store)
    task = sensor(write_drift_spec(tmp_path, tmp_path / "data", window_days=2), wait_for_new_partitions=False)
    with pytest.raises(AirflowSkipException, match="the next partition that lands starts the next check"):
        task.execute(task_context())
