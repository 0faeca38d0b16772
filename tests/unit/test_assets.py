"""The Assets a model's DAGs update, and how a task attaches its event: only through an outlet it holds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlops_airflow.assets import announce_champion, champion_alias, champion_asset, data_asset, describe_outlet, drift_asset, predictions_asset


def context(*outlets):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"task": SimpleNamespace(outlets=list(outlets)), "outlet_events": OutletEventAccessors()}


def test_names_and_uris_are_stable_per_model():
    assert (champion_asset("churn").name, champion_asset("churn").uri) == ("churn.champion", "x-mlops://models/churn/champion")
    assert (drift_asset("churn").name, champion_alias("churn").name) == ("churn.drift", "churn.champion_changes")


def test_the_data_assets_are_the_specs_uris():
    spec = SimpleNamespace(name="churn", data=SimpleNamespace(uri="s3://lake/churn/events", predictions_uri="s3://lake/churn/predictions"))
    assert (data_asset(spec).uri, predictions_asset(spec).name) == ("s3://lake/churn/events", "s3://lake/churn/predictions")
    # Named by their URIs: a second model reading the same data shares the asset, instead of deactivating it.
    other = SimpleNamespace(name="upsell", data=spec.data)
    assert data_asset(other) == data_asset(spec)
    # Named by the normalized URI: another spelling of the same place is the same asset, and credentials never name it.
    spelled = SimpleNamespace(name="x", data=SimpleNamespace(uri="S3://lake/churn/events/", predictions_uri="s3://lake/p"))
    assert data_asset(spelled) == data_asset(spec)


def test_a_champion_is_announced_through_the_alias_the_task_holds():
    ctx = context(champion_alias("churn"))
    announce_champion(ctx, {"version": "3", "decision": "promoted"})
    (event,) = ctx["outlet_events"][champion_alias("churn")].asset_alias_events
    assert (event.dest_asset_key.name, event.extra) == ("churn.champion", {"version": "3", "decision": "promoted"})


@pytest.mark.parametrize(
    "ctx",
    [
        pytest.param(context(), id="no-outlet"),
        pytest.param(context(drift_asset("churn")), id="another-outlet"),
        pytest.param({"task": SimpleNamespace(outlets=[champion_alias("churn")])}, id="outside-a-task-run"),
    ],
)
def test_a_task_without_the_alias_announces_nothing(ctx):
    before = dict(ctx)
    announce_champion(ctx, {"version": "3"})  # and raises nothing
    assert ctx.keys() == before.keys()
    if "outlet_events" in ctx:
        assert ctx["outlet_events"][champion_alias("churn")].asset_alias_events == []


def test_an_outlet_gets_its_extras_and_partition():
    spec = SimpleNamespace(name="churn", data=SimpleNamespace(uri="file:///d/events", predictions_uri="file:///d/predictions"))
    ctx = context(predictions_asset(spec))
    describe_outlet(ctx, predictions_asset(spec), {"rows": 300}, partition="2026-03-01")
    event = ctx["outlet_events"][predictions_asset(spec)]
    assert (event.extra, event.partition_keys) == ({"rows": 300}, {"2026-03-01"})
    describe_outlet(ctx, drift_asset("churn"), {"onset": "x"})  # not an outlet of this task: nothing
    assert ctx["outlet_events"][drift_asset("churn")].extra == {}
