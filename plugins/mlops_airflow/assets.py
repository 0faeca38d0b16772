"""The Airflow Assets a model's DAGs update: what other teams' DAGs can be scheduled on.

Where they sit in the loop: ``retrain_<model>`` reads the model's data and, when it promotes,
announces a new champion; ``rollback_<model>`` (and a failed release's ``rollback_release``)
announce the champion they put back; ``drift_monitor_<model>`` announces a drift it found;
``batch_score_<model>`` writes one day of predictions. The UI's asset graph shows the lineage
from the data to the champion. A consumer is an ordinary DAG:

.. code-block:: python

    from airflow.sdk import DAG

    from mlops_airflow.assets import champion_asset

    with DAG(dag_id="refresh_churn_report", schedule=[champion_asset("churn")], ...):
        ...  # context["triggering_asset_events"]: the new champion's version, run and decision

A champion changes only when a task says so (a promotion that moved the alias, a rollback that
restored one): those tasks hold the model's champion :class:`AssetAlias` and attach the event
to the champion asset through it, so a run that moved nothing announces nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, AssetWatcher

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.specs import ModelSpec

GROUP = "mlops"
CHAMPION_ALIAS_SUFFIX = ".champion_changes"


def champion_asset(model: str) -> Asset:
    """Updated each time ``model`` (the spec's ``name``) gets a new champion.

    Extras: ``version``, ``previous`` (the champion before, or null), ``run_id`` (its MLflow
    training run), ``decision`` (``promoted``, ``forced`` or ``rolled_back``), ``dag_run``.
    """
    return Asset(name=f"{model}.champion", uri=f"x-mlops://models/{model}/champion", group=GROUP)


def champion_alias(model: str) -> AssetAlias:
    """The outlet of the tasks that may change the champion: an event is attached only when they did."""
    return AssetAlias(name=f"{model}{CHAMPION_ALIAS_SUFFIX}", group=GROUP)


def drift_asset(model: str) -> Asset:
    """Updated each time ``drift_monitor_<model>`` finds drift. Extras: ``onset``, ``window_end``, ``drifted_features``, ``champion_version``."""
    return Asset(name=f"{model}.drift", uri=f"x-mlops://models/{model}/drift", group=GROUP)


def data_asset(spec: ModelSpec, *, watchers: Sequence[AssetWatcher] = ()) -> Asset:
    """The model's daily partitions (``data.uri``): read by training, drift and scoring.

    Named by its URI: two models that read the same data share one asset (Airflow deactivates an
    asset whose name or URI another one also has). ``watchers``: the asset watchers a DAG
    scheduled on it adds (``drift_monitor_<model>``'s, which notices a partition landing).
    """
    return _named_by_uri(spec.data.uri, watchers=watchers)


def predictions_asset(spec: ModelSpec) -> Asset:
    """The champion's batch predictions (``data.predictions_uri``), one partition a day (the event's partition key); named by its URI."""
    return _named_by_uri(spec.data.predictions_uri)


def _named_by_uri(uri: str, *, watchers: Sequence[AssetWatcher] = ()) -> Asset:
    """An asset named by its normalized URI (Airflow's spelling: lower-case scheme, no credentials), so that two spellings of one place agree."""
    normalized = Asset(uri=uri).uri
    return Asset(name=normalized, uri=normalized, group=GROUP, watchers=list(watchers))


def _outlets(context: Context) -> list[Any]:
    return list(getattr(context.get("task"), "outlets", None) or [])


def announce_champion(context: Context, extra: dict[str, Any]) -> None:
    """Attach a champion event (``extra``) through the champion alias the task holds; nothing when it holds none."""
    if "outlet_events" not in context:
        return
    for outlet in _outlets(context):
        if isinstance(outlet, AssetAlias) and outlet.name.endswith(CHAMPION_ALIAS_SUFFIX):
            context["outlet_events"][outlet].add(champion_asset(outlet.name.removesuffix(CHAMPION_ALIAS_SUFFIX)), extra=extra)


def describe_outlet(context: Context, asset: Asset, extra: dict[str, Any], partition: str | None = None) -> None:
    """Set the extras (and the partition key) of the event a task's ``asset`` outlet gets when it succeeds."""
    if "outlet_events" in context and any(isinstance(o, Asset) and o.name == asset.name for o in _outlets(context)):
        event = context["outlet_events"][asset]
        event.extra.update(extra)
        if partition is not None:
            event.add_partitions(partition)
