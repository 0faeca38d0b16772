"""One model's overview from a real MLflow store: aliases, decisions and gate tables, drift history; a failing part."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from helpers import register_champion_with_reference

from mlops_airflow.constants import TAG_DECISION, TAG_DECISION_DAG_RUN, TAG_DECISION_GATES
from mlops_airflow.core.promotion import decision_artifact
from mlops_airflow.hooks.mlflow import MlflowHook
from mlops_airflow.serving.base import Color, ColorState, ServingStatus
from mlops_airflow.ui.overview import RunRow, Sources, gather_overview

DAG_RUN = "manual__2026-12-01T10:00:00+00:00"


@pytest.fixture
def registry(mlflow_store):
    """churn v1 (champion, promoted with a gate table and two days of drift history); no challenger."""
    from mlflow.tracking import MlflowClient

    version = register_champion_with_reference(mlflow_store)
    client = MlflowClient(mlflow_store)
    run_id = client.get_model_version("churn", version).run_id
    client.set_model_version_tag("churn", version, TAG_DECISION, "promoted")
    client.set_model_version_tag("churn", version, TAG_DECISION_GATES, "roc_auc_min=pass")
    client.set_model_version_tag("churn", version, TAG_DECISION_DAG_RUN, DAG_RUN)
    gates = [{"name": "roc_auc_min", "passed": True, "detail": "0.81 >= 0.70"}, {"name": "log_loss_max", "passed": True, "detail": "0.41 <= 0.60"}]
    client.log_dict(run_id, {"decision": "promoted", "evaluation": {"gates": gates}}, decision_artifact(DAG_RUN))
    hook = MlflowHook(tracking_uri=mlflow_store)
    first, second = dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC), dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
    hook.log_day_metrics(
        run_id,
        [
            ("drift.tenure.p_value", 0.4, dt.date(2026, 11, 29)),
            ("drift.tenure.p_value", 0.0001, dt.date(2026, 11, 30)),
            ("drift.tenure.effect", 0.02, dt.date(2026, 11, 29)),
            ("drift.all_features.p_value", 0.3, dt.date(2026, 11, 30)),
        ],
        measured_at=second,
    )
    hook.log_day_metrics(run_id, [("drift.tenure.p_value", 0.001, dt.date(2026, 11, 30))], measured_at=first)  # an earlier check of that day
    return hook, version


def sources(hook, *, serving=None, runs=None, ui="http://mlflow.example:5000"):
    status = ServingStatus(
        live=Color.BLUE, colors={Color.BLUE: ColorState(Color.BLUE, "1", True), Color.GREEN: ColorState(Color.GREEN, None, False, detail="stopped")}
    )
    return Sources(
        mlflow_hook=hook,
        serving_status=serving or (lambda spec: ("local", status, "http://127.0.0.1:5001/invocations")),
        recent_runs=runs or (lambda dag_ids: [RunRow(dag_ids[0], "manual__x", "manual", "success", "2026-12-01T10:00:00+00:00", None)]),
        mlflow_ui=ui,
    )


def test_the_champion_its_gates_serving_drift_and_runs(registry, churn_spec):
    hook, version = registry
    overview = gather_overview(churn_spec, sources(hook), readable_dag_ids=["retrain_churn"])
    assert overview.errors == {}
    [champion] = overview.versions  # no challenger, no previous champion
    assert (champion.alias, champion.version, champion.decision) == ("champion", version, "promoted")
    assert [g["name"] for g in champion.gates] == ["roc_auc_min", "log_loss_max"]
    assert champion.run_link.href.startswith("http://mlflow.example:5000/#/experiments/")
    assert champion.run_link.href.endswith(f"/runs/{champion.run_id}")
    assert (overview.serving.live, overview.serving.live_version, overview.serving.live_url) == ("blue", "1", "http://127.0.0.1:5001/invocations")
    assert [(c.color, c.ready) for c in overview.serving.colors] == [("blue", True), ("green", False)]
    drift = {series.feature: series for series in overview.drift}
    assert set(drift) == {"tenure", "all_features"}
    assert [(p.day, p.value) for p in drift["tenure"].p_value] == [("2026-11-29", 0.4), ("2026-11-30", 0.0001)]
    assert [(p.day, p.value) for p in drift["tenure"].effect] == [("2026-11-29", 0.02)]
    assert [r.run_id for r in overview.runs] == ["manual__x"]


def test_a_part_that_fails_is_reported_and_the_rest_still_shows(registry, churn_spec):
    hook, _ = registry

    def broken(spec):
        raise ConnectionError("cannot reach http://admin:s3cret@serving.internal:8080/status")

    overview = gather_overview(churn_spec, sources(hook, serving=broken), readable_dag_ids=[])
    assert overview.serving is None
    assert overview.errors["serving"].startswith("ConnectionError: cannot reach http://***@serving.internal")
    assert "s3cret" not in overview.errors["serving"]
    assert [v.alias for v in overview.versions] == ["champion"]
    assert overview.runs == []  # none of its DAGs readable: no runs asked for


def test_no_links_without_an_mlflow_ui_and_no_drift_without_a_champion(mlflow_store, churn_spec):
    hook = MlflowHook(tracking_uri=mlflow_store)
    overview = gather_overview(churn_spec, sources(hook, ui=None), readable_dag_ids=["retrain_churn"])
    assert (overview.versions, overview.drift, overview.reports, overview.errors) == ([], [], [], {})


def test_a_registry_error_is_the_registry_parts_own(churn_spec):
    hook = SimpleNamespace(get_version_by_alias=lambda name, alias: (_ for _ in ()).throw(OSError("registry down")))
    overview = gather_overview(churn_spec, sources(hook), readable_dag_ids=[])
    assert overview.errors == {"registry": "OSError: registry down"}
    assert overview.serving is not None


def test_the_drift_history_goes_on_across_a_promotion(registry, mlflow_store, churn_spec):
    """Checks before the last promotion were kept on the previous champion's run: one line per feature across both."""
    from mlflow.tracking import MlflowClient

    hook, first = registry
    client = MlflowClient(mlflow_store)
    second = register_champion_with_reference(mlflow_store)  # the new champion
    client.set_registered_model_alias("churn", "previous_champion", first)
    hook.log_day_metrics(client.get_model_version("churn", second).run_id, [("drift.tenure.p_value", 0.5, dt.date(2026, 12, 1))])
    overview = gather_overview(churn_spec, sources(hook), readable_dag_ids=[])
    tenure = next(series for series in overview.drift if series.feature == "tenure")
    assert [p.day for p in tenure.p_value] == ["2026-11-29", "2026-11-30", "2026-12-01"]
