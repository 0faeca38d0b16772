"""What the Models page shows of one model, gathered when the page is asked for.

Sources: the spec, the MLflow registry (the three aliases, their decisions and gate tables),
the serving backend (live colour, URL, readiness), the drift history the drift sensor records on
the champion's run, and Airflow's own runs of the model's DAGs. Each part is gathered on its
own: a part that fails (a server down, a backend this process has no credentials for) is shown
as that part's error, never as a broken page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mlops_airflow.constants import (
    BATCH_SCORE_DAG_PREFIX,
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    DRIFT_ARTIFACT_DIR,
    DRIFT_MONITOR_DAG_PREFIX,
    PERFORMANCE_MONITOR_DAG_PREFIX,
    PREVIOUS_CHAMPION_ALIAS,
    RETRAIN_DAG_PREFIX,
    ROLLBACK_DAG_PREFIX,
    TAG_DECISION,
    TAG_DECISION_AT,
    TAG_DECISION_BY,
    TAG_DECISION_DAG_RUN,
    TAG_DECISION_REASONS,
    TAG_DECISION_WINDOW,
)
from mlops_airflow.specs import ModelSpec

ALIASES = (CHAMPION_ALIAS, CHALLENGER_ALIAS, PREVIOUS_CHAMPION_ALIAS)
DAG_PREFIXES = (RETRAIN_DAG_PREFIX, DRIFT_MONITOR_DAG_PREFIX, BATCH_SCORE_DAG_PREFIX, PERFORMANCE_MONITOR_DAG_PREFIX, ROLLBACK_DAG_PREFIX)
DRIFT_HISTORY_DAYS = 60
RECENT_RUNS = 10

T = TypeVar("T")
_CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]+@")


def model_dag_ids(model: str) -> list[str]:
    return [f"{prefix}{model}" for prefix in DAG_PREFIXES]


@dataclass(frozen=True)
class Link:
    label: str
    href: str


@dataclass(frozen=True)
class VersionCard:
    alias: str
    version: str
    run_id: str
    decision: str | None
    decided_at: str | None
    decided_by: str | None
    window: str | None
    reasons: str | None
    gates: list[dict[str, Any]]  # name, passed, detail: the promotion's gate table
    run_link: Link | None


@dataclass(frozen=True)
class ColorCard:
    color: str
    version: str | None
    ready: bool
    weight: int | None
    detail: str


@dataclass(frozen=True)
class ServingCard:
    backend: str
    live: str | None
    live_version: str | None
    live_url: str | None
    colors: list[ColorCard]


@dataclass(frozen=True)
class DriftPoint:
    day: str
    value: float


@dataclass(frozen=True)
class DriftSeries:
    feature: str
    p_value: list[DriftPoint]
    effect: list[DriftPoint]


@dataclass(frozen=True)
class RunRow:
    dag_id: str
    run_id: str
    run_type: str
    state: str
    started: str | None
    ended: str | None


@dataclass
class ModelOverview:
    name: str
    description: str = ""
    versions: list[VersionCard] = field(default_factory=list)
    serving: ServingCard | None = None
    drift: list[DriftSeries] = field(default_factory=list)
    drift_alpha: float | None = None
    reports: list[Link] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # part -> what went wrong

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attempt(overview: ModelOverview, part: str, gather: Callable[[], T], default: T) -> T:
    try:
        return gather()
    except Exception as err:  # one part's failure is shown; the page still renders
        overview.errors[part] = _CREDENTIALS_IN_URL.sub("://***@", f"{type(err).__name__}: {err}")[:500]
        return default


class Sources:
    """Where the overview reads from; tests give fakes of the same shape.

    :param mlflow_hook: an :class:`~mlops_airflow.hooks.mlflow.MlflowHook` (registry, runs, artifacts).
    :param serving_status: spec -> (backend name, :class:`ServingStatus`, live URL).
    :param recent_runs: DAG ids -> their most recent runs, newest first.
    :param mlflow_ui: base URL of MLflow's UI for links, or ``None``.
    """

    def __init__(
        self,
        *,
        mlflow_hook: Any,
        serving_status: Callable[[ModelSpec], tuple[str, Any, str | None]],
        recent_runs: Callable[[Sequence[str]], list[RunRow]],
        mlflow_ui: str | None,
    ) -> None:
        self.mlflow_hook = mlflow_hook
        self.serving_status = serving_status
        self.recent_runs = recent_runs
        self.mlflow_ui = mlflow_ui

    def run_link(self, run_id: str, label: str, path: str = "") -> Link | None:
        if self.mlflow_ui is None:
            return None
        run = self.mlflow_hook.client.get_run(run_id)
        suffix = f"/artifacts/{path}" if path else ""
        return Link(label, f"{self.mlflow_ui}/#/experiments/{run.info.experiment_id}/runs/{run_id}{suffix}")


def gather_overview(spec: ModelSpec, sources: Sources, *, readable_dag_ids: Sequence[str]) -> ModelOverview:
    """One model's overview; ``readable_dag_ids`` are the DAGs whose runs this user may see."""
    overview = ModelOverview(name=spec.name, description=getattr(spec, "description", "") or "", drift_alpha=spec.drift.alpha)
    overview.versions = _attempt(overview, "registry", lambda: _versions(spec, sources), [])
    overview.serving = _attempt(overview, "serving", lambda: _serving(spec, sources), None)
    champion = next((v for v in overview.versions if v.alias == CHAMPION_ALIAS), None)
    if champion is not None:
        # Each check is kept on the run of the champion of its time: the previous champion's carry the days before the last promotion.
        checked_runs = [v.run_id for v in overview.versions if v.alias in (CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS)]
        overview.drift = _attempt(overview, "drift", lambda: _drift_history(checked_runs, sources), [])
        overview.reports = _attempt(overview, "reports", lambda: _drift_reports(champion.run_id, sources), [])
    if readable_dag_ids:
        overview.runs = _attempt(overview, "runs", lambda: sources.recent_runs(readable_dag_ids), [])
    return overview


def _versions(spec: ModelSpec, sources: Sources) -> list[VersionCard]:
    hook = sources.mlflow_hook
    cards = []
    for alias in ALIASES:
        version = hook.get_version_by_alias(spec.registered_model_name, alias)
        if version is None:
            continue
        tags = dict(version.tags or {})
        cards.append(
            VersionCard(
                alias=alias,
                version=str(version.version),
                run_id=version.run_id,
                decision=tags.get(TAG_DECISION),
                decided_at=tags.get(TAG_DECISION_AT),
                decided_by=tags.get(TAG_DECISION_BY),
                window=tags.get(TAG_DECISION_WINDOW),
                reasons=tags.get(TAG_DECISION_REASONS),
                gates=_gate_table(hook, version.run_id, tags.get(TAG_DECISION_DAG_RUN)),
                run_link=sources.run_link(version.run_id, f"MLflow run of v{version.version}"),
            )
        )
    return cards


def _gate_table(hook: Any, run_id: str, dag_run: str | None) -> list[dict[str, Any]]:
    """The gates of the version's decision, from the record promotion wrote (``promotion/<dag run>.json``)."""
    if not dag_run:
        return []
    from mlflow.exceptions import MlflowException

    from mlops_airflow.core.promotion import decision_artifact

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = hook.client.download_artifacts(run_id, decision_artifact(dag_run), folder)
        except (MlflowException, OSError):  # a version decided before records were kept has only its tags
            return []
        record = json.loads(Path(path).read_text())
    return [{"name": g["name"], "passed": bool(g["passed"]), "detail": str(g.get("detail", ""))} for g in record.get("evaluation", {}).get("gates", [])]


def _serving(spec: ModelSpec, sources: Sources) -> ServingCard:
    backend, status, live_url = sources.serving_status(spec)
    colors = [
        ColorCard(color=str(color), version=state.version, ready=state.ready, weight=status.weights.get(color), detail=state.detail)
        for color, state in sorted(status.colors.items())
    ]
    return ServingCard(
        backend=backend,
        live=str(status.live) if status.live is not None else None,
        live_version=status.live_version,
        live_url=live_url,
        colors=colors,
    )


def _drift_history(run_ids: Sequence[str], sources: Sources) -> list[DriftSeries]:
    """Per feature, the p-value and effect of each checked day over ``run_ids``; a day checked again shows its latest check."""
    from mlops_airflow.core.drift_windows import DRIFT_HISTORY_PREFIX

    client = sources.mlflow_hook.client
    latest: dict[tuple[str, str], dict[int, tuple[int, float]]] = {}  # (feature, kind) -> day step -> (timestamp, value)
    for run_id in dict.fromkeys(run_ids):
        for key in client.get_run(run_id).data.metrics:
            feature, _, kind = key.removeprefix(DRIFT_HISTORY_PREFIX).rpartition(".")
            if not key.startswith(DRIFT_HISTORY_PREFIX) or kind not in ("p_value", "effect") or not feature:
                continue
            days = latest.setdefault((feature, kind), {})
            for metric in client.get_metric_history(run_id, key):
                if metric.step not in days or metric.timestamp >= days[metric.step][0]:
                    days[metric.step] = (metric.timestamp, metric.value)
    epoch = dt.date(1970, 1, 1)

    def points(feature: str, kind: str) -> list[DriftPoint]:
        days = sorted(latest.get((feature, kind), {}).items())[-DRIFT_HISTORY_DAYS:]
        return [DriftPoint((epoch + dt.timedelta(days=step)).isoformat(), value) for step, (_, value) in days]

    features = sorted({feature for feature, _ in latest})
    return [DriftSeries(feature, points(feature, "p_value"), points(feature, "effect")) for feature in features]


def _drift_reports(run_id: str, sources: Sources) -> list[Link]:
    artifacts = sources.mlflow_hook.client.list_artifacts(run_id, DRIFT_ARTIFACT_DIR)
    reports = sorted((a.path for a in artifacts if a.path.endswith(".html")), reverse=True)[:5]
    return [link for link in (sources.run_link(run_id, Path(path).stem, path) for path in reports) if link is not None]
