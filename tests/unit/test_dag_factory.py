import datetime as dt

import pytest

from mlops_airflow.settings import RETRY_DELAY_ENV, retry_delay


def test_retry_delay_defaults_to_two_minutes(monkeypatch):
    monkeypatch.delenv(RETRY_DELAY_ENV, raising=False)
    assert retry_delay() == dt.timedelta(minutes=2)


def test_retry_delay_from_the_environment(monkeypatch):
    monkeypatch.setenv(RETRY_DELAY_ENV, "3")
    assert retry_delay() == dt.timedelta(seconds=3)


@pytest.mark.parametrize("raw", ["soon", "0", "-5"])
def test_a_bad_retry_delay_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(RETRY_DELAY_ENV, raw)
    with pytest.raises(ValueError, match=RETRY_DELAY_ENV):
        retry_delay()


@pytest.mark.parametrize(("strategy", "gate"), [("canary", "canary_release"), ("shadow", "shadow_replay"), ("ab", "ab_test")])
def test_a_canary_or_shadow_release_is_judged_then_decided_before_the_switch(strategy, gate):
    from helpers import churn_spec_raw

    from mlops_airflow.dag_factory import build_retrain_dag
    from mlops_airflow.specs import parse_spec

    raw = churn_spec_raw()
    raw["serving"]["release"] = {"strategy": strategy}
    dag = build_retrain_dag(parse_spec(raw, source="churn.yaml"))
    assert dag.get_task("smoke_test_idle").downstream_task_ids == {gate, "rollback_release"}
    assert dag.get_task(gate).downstream_task_ids == {"decide_release", "rollback_release"}
    assert dag.get_task("decide_release").downstream_task_ids == {"switch_traffic", "rollback_release"}
    # After a skipped decision (nothing inconclusive) the switch still runs; after a failure or a rejection it does not.
    assert dag.get_task("switch_traffic").trigger_rule == "none_failed"
    assert {gate, "decide_release"} <= dag.get_task("rollback_release").upstream_task_ids
    assert dag.get_task(gate).retries >= 2, "a fault retries (the interrupted release has put all traffic back first)"


def test_a_blue_green_release_has_no_gate():
    from helpers import churn_spec_raw

    from mlops_airflow.dag_factory import build_retrain_dag
    from mlops_airflow.specs import parse_spec

    dag = build_retrain_dag(parse_spec(churn_spec_raw(), source="churn.yaml"))
    assert dag.get_task("smoke_test_idle").downstream_task_ids == {"switch_traffic", "rollback_release"}
    assert dag.get_task("switch_traffic").trigger_rule == "all_success"


def test_only_a_spec_with_labels_gets_a_performance_monitor(tmp_path, monkeypatch):
    from helpers import churn_spec_raw, write_spec

    from mlops_airflow.dag_factory import build_performance_monitor_dag, dags_of_every_spec

    with_labels = churn_spec_raw()
    without = churn_spec_raw()
    del without["performance"]
    without["name"] = "fraud"
    without["serving"]["local"] = {"live_port": 9600}
    write_spec(with_labels, tmp_path)
    write_spec(without, tmp_path, "fraud.yaml")
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(tmp_path))
    dags = dags_of_every_spec("performance_monitor", build_performance_monitor_dag)
    assert sorted(dags) == ["performance_monitor_churn"]
    assert "invalid-spec" not in dags["performance_monitor_churn"].tags


SET = {"retrain_deadline_minutes": 240, "rollback_deadline_minutes": 60}


@pytest.mark.parametrize(
    ("schedules", "approval", "release", "retrain", "rollback"),
    [
        pytest.param({}, False, None, None, None, id="off-by-default"),
        pytest.param(SET, True, None, 240.0 + 24 * 60, 60.0, id="approval-waits-count"),
        pytest.param({"retrain_deadline_minutes": 30, "rollback_deadline_minutes": None}, False, None, 30.0, None, id="set-and-off"),
        # An A/B release holds its test 60 minutes, then waits up to 24 h for a person: neither is a stuck run.
        pytest.param(
            SET, False, {"strategy": "ab", "ab": {"duration_minutes": 60}, "decision_timeout_hours": 24}, 240.0 + 60 + 24 * 60, 60.0 + 60 + 24 * 60, id="ab"
        ),
    ],
)
def test_retrain_and_rollback_runs_have_a_deadline_from_their_queueing(schedules, approval, release, retrain, rollback):
    from helpers import churn_spec_raw

    from mlops_airflow.dag_factory import build_retrain_dag, build_rollback_dag
    from mlops_airflow.specs import parse_spec

    raw = churn_spec_raw()
    raw["schedules"].update(schedules)
    raw["promotion"]["require_approval"] = approval
    if release:
        raw["serving"]["release"] = release
    spec = parse_spec(raw, source="churn.yaml")
    for dag, minutes in ((build_retrain_dag(spec), retrain), (build_rollback_dag(spec), rollback)):
        if minutes is None:
            assert not dag.deadline, dag.dag_id
            continue
        (alert,) = dag.deadline
        assert (alert.reference.reference_name, alert.interval) == ("DagRunQueuedAtDeadline", dt.timedelta(minutes=minutes)), dag.dag_id
        assert alert.callback.path == "mlops_airflow.observability.alerts.deadline_missed"
        assert alert.callback.kwargs == {"limit_minutes": minutes}


@pytest.mark.parametrize("value", [0, -5, "soon", 7 * 24 * 60 + 1])
def test_a_bad_deadline_names_its_field(value):
    from helpers import churn_spec_raw

    from mlops_airflow.specs import ModelSpecError, parse_spec

    raw = churn_spec_raw()
    raw["schedules"]["retrain_deadline_minutes"] = value
    with pytest.raises(ModelSpecError) as info:
        parse_spec(raw, source="churn.yaml")
    assert info.value.field == "schedules.retrain_deadline_minutes"


@pytest.mark.parametrize(
    ("cron", "watch", "expected"),
    [
        pytest.param("0 * * * *", 5, "cron or asset", id="the default: the hour or a landing"),
        pytest.param("0 * * * *", 0, "cron", id="watching off"),
        pytest.param(None, 5, "asset", id="no cron: landings only"),
        pytest.param(None, 0, "manual", id="neither: by hand only"),
    ],
)
def test_the_drift_monitor_starts_on_its_cron_and_when_a_partition_lands(cron, watch, expected):
    from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable
    from helpers import churn_spec_raw

    from mlops_airflow.assets import data_asset
    from mlops_airflow.dag_factory import build_drift_monitor_dag, build_retrain_dag, drift_monitor_schedule
    from mlops_airflow.specs import parse_spec

    raw = churn_spec_raw()
    raw["schedules"]["drift_monitor"] = cron
    raw["drift"]["watch_interval_seconds"] = watch
    spec = parse_spec(raw, source="churn.yaml")
    schedule = drift_monitor_schedule(spec)
    kinds = {AssetOrTimeSchedule: "cron or asset", CronDataIntervalTimetable: "cron", list: "asset", type(None): "manual"}
    assert kinds[type(schedule)] == expected
    # Every DAG names the data asset with the same watchers: Airflow keeps the last definition it collects.
    data = data_asset(spec).name
    assets = [asset for dag in (build_drift_monitor_dag(spec), build_retrain_dag(spec)) for task in dag.tasks for asset in task.inlets if asset.name == data]
    assert assets
    for asset in assets:
        triggers = [w.trigger.serialize() for w in asset.watchers]
        assert triggers == (
            [("mlops_airflow.triggers.partitions.PartitionLandedTrigger", {"base_uri": spec.data.uri, "poll_interval": watch, "conn_id": None})]
            if watch
            else []
        )


def test_models_on_one_data_uri_share_one_watcher_at_the_shortest_interval(monkeypatch, tmp_path):
    """Airflow keeps one definition's watchers: two specs on the same data must not give the asset two."""
    import yaml
    from helpers import churn_spec_raw, free_port

    from mlops_airflow import dag_factory

    for name, seconds in (("churn", 30), ("upsell", 5), ("quiet", 0)):
        raw = churn_spec_raw()
        raw["name"] = name
        raw["drift"]["watch_interval_seconds"] = seconds
        raw["serving"]["local"] = {"live_port": free_port(), "blue_port": free_port(), "green_port": free_port()}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(tmp_path))
    monkeypatch.setattr(dag_factory, "_SHARED_WATCH", {})
    dags = dag_factory.dags_of_every_spec("drift_monitor", dag_factory.build_drift_monitor_dag)
    intervals = {
        dag_id: sorted({w.trigger.poll_interval for task in dag.tasks for asset in task.inlets for w in getattr(asset, "watchers", [])})
        for dag_id, dag in dags.items()
    }
    assert intervals == {"drift_monitor_churn": [5], "drift_monitor_upsell": [5], "drift_monitor_quiet": [5]}
    assert dags["drift_monitor_quiet"].timetable.__class__.__name__ == "CronDataIntervalTimetable"  # it names the asset; it is not scheduled on it
