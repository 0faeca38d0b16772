"""The provisioned Grafana dashboard's queries, rendered against what the statsd-exporter mapping produces.

Each declared metric is sent (on paper) as Airflow would send it, with a prefix, and run
through the mapping file's glob rules the way statsd-exporter does: first matching rule
wins, ``*`` is one dot-separated component, ``$n`` its value. Every metric and label a panel
queries must come out of that, so a renamed metric or label breaks the build, not the dashboard.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from helpers import REPO_ROOT

from mlops_airflow.observability.metrics import STATSD_METRICS, MetricKind

DASHBOARD = REPO_ROOT / "deploy/compose/grafana/dashboards/mlops-airflow.json"
MAPPING = REPO_ROOT / "deploy/compose/statsd-mapping.yml"
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "min", "max", "avg", "le", "without"}


def map_statsd(name: str, rules: list[dict]) -> tuple[str, dict[str, str]] | None:
    """statsd-exporter's glob mapping of one metric name: (Prometheus name, labels), or None."""
    for rule in rules:
        pattern = "^" + r"\.".join("([^.]+)" if part == "*" else re.escape(part) for part in rule["match"].split(".")) + "$"
        found = re.match(pattern, name)
        if found:
            groups = found.groups()
            labels = {key: re.sub(r"\$(\d+)", lambda m, groups=groups: groups[int(m.group(1)) - 1], value) for key, value in (rule.get("labels") or {}).items()}
            return rule["name"], labels
    return None


@pytest.fixture(scope="module")
def series() -> dict[str, set[str]]:
    """Prometheus series name -> label names, for one sample of every declared metric."""
    rules = yaml.safe_load(MAPPING.read_text())["mappings"]
    produced: dict[str, set[str]] = {}
    for metric in STATSD_METRICS:
        sample = "airflow." + metric.name(**{label: f"x_{label}" for label in metric.labels})
        mapped = map_statsd(sample, rules)
        assert mapped is not None, f"{sample} matches no mapping rule"
        name, labels = mapped
        assert labels == {label: f"x_{label}" for label in metric.labels}, (sample, labels)
        names = [name + suffix for suffix in HISTOGRAM_SERIES] if metric.kind is MetricKind.TIMER else [name]
        for series_name in names:
            produced[series_name] = set(labels) | ({"le"} if series_name.endswith("_bucket") else set())
    return produced


def queries() -> list[tuple[str, str, str]]:
    """(panel title, PromQL, legend format) of every panel target and template variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = [(panel["title"], target["expr"], target.get("legendFormat", "")) for panel in dashboard["panels"] for target in panel["targets"]]
    found += [(f"variable {v['name']}", v["definition"], "") for v in dashboard["templating"]["list"]]
    return found


def test_a_mapping_rule_matches_only_its_own_metric():
    rules = yaml.safe_load(MAPPING.read_text())["mappings"]
    assert map_statsd("airflow.mlops.drift.churn.age.p_value", rules) == ("mlops_drift_p_value", {"model": "churn", "feature": "age"})
    assert map_statsd("airflow.mlops.drift.churn.drifted_features", rules) == ("mlops_drift_drifted_features", {"model": "churn"})
    assert map_statsd("airflow.dagrun.duration.success.retrain_churn", rules) is None  # Airflow's own: default naming


@pytest.mark.parametrize(("title", "expr", "legend"), queries())
def test_every_query_reads_series_the_exporter_produces(series, title, expr, legend):
    metrics = set(re.findall(r"\bmlops_[a-z_]+\b", expr))
    assert metrics, f"{title}: queries none of our metrics"
    for metric in metrics:
        assert metric in series, f"{title}: {metric} is not produced by the statsd-exporter mapping"
        for selector in re.findall(rf"\b{metric}\{{([^}}]*)\}}", expr):
            used = {m.split("=")[0].strip().rstrip("!~") for m in selector.split(",") if m.strip()}
            assert used <= series[metric], f"{title}: {metric} has no label {used - series[metric]}"
    for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
        labels = {label.strip() for label in grouping.split(",")}
        assert any(labels <= series[m] for m in metrics), f"{title}: groups by {labels}"
    for legend_label in re.findall(r"\{\{(\w+)\}\}", legend):
        assert any(legend_label in series[m] for m in metrics), f"{title}: the legend shows {legend_label}, which no queried series has"


def test_the_dashboard_covers_drift_data_checks_promotions_switches_and_rollbacks():
    queried = " ".join(expr for _, expr, _ in queries())
    for metric in (
        "mlops_drift_p_value",
        "mlops_drift_ks_stat",
        "mlops_data_check_rules_failed",
        "mlops_promotion_promoted_total",
        "mlops_serving_switches_total",
        "mlops_serving_rollbacks_total",
    ):
        assert metric in queried
    dashboard = json.loads(DASHBOARD.read_text())
    drift = next(p for p in dashboard["panels"] if p["title"].startswith("Drift p-value"))
    assert drift["targets"][0]["legendFormat"] == "{{feature}}"  # one line per feature


def test_a_renamed_metric_would_be_caught(series):
    """The check above can fail: a query for a name the mapping does not produce is reported."""
    assert "mlops_drift_pvalue" not in series
    assert "mlops_serving_smoke_latency_seconds_bucket" in series
