"""statsd metrics: one documented list, names checked against it, sent under Airflow's prefix, never failing the caller."""

from __future__ import annotations

import logging
import re

import pytest
from helpers import REPO_ROOT

from mlops_airflow.observability.metrics import (
    DRIFT_P_VALUE,
    PROMOTION_PRIMARY_METRIC,
    PROMOTION_PROMOTED,
    SERVING_SMOKE_LATENCY,
    STATSD_METRICS,
    MetricKind,
    gauge,
    incr,
    markdown_table,
    statsd_mapping,
    timings,
)


def test_names_are_filled_in_and_made_safe():
    assert DRIFT_P_VALUE.name(model="churn v2", feature="age.years") == "mlops.drift.churn_v2.age_years.p_value"
    assert DRIFT_P_VALUE.labels == ("model", "feature")


def test_a_missing_or_unknown_label_is_an_error():
    with pytest.raises(ValueError, match=r"takes labels \['model', 'feature'\]"):
        DRIFT_P_VALUE.name(model="churn")
    with pytest.raises(ValueError, match="takes labels"):
        PROMOTION_PROMOTED.name(model="churn", colour="blue")


def test_counter_and_gauge_go_out_under_airflows_prefix(statsd):
    incr(PROMOTION_PROMOTED, model="churn")
    gauge(PROMOTION_PRIMARY_METRIC, 0.8125, model="churn", role="challenger", metric="roc_auc")
    # The fixture strips the configured prefix "testprefix."; only lines that carried it count.
    assert statsd(2) == ["mlops.promotion.churn.challenger.roc_auc:0.8125|g", "mlops.promotion.churn.promoted:1|c"]


def test_off_by_default_and_never_raises(monkeypatch, caplog):
    from mlops_airflow.observability import metrics

    monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON", raising=False)
    assert metrics._client() is None  # nothing is sent unless Airflow's [metrics] statsd_on is set
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "host.invalid")
    with caplog.at_level(logging.WARNING, logger=metrics.log.name):
        incr(PROMOTION_PROMOTED, model="churn")  # an unresolvable host is logged, not raised
        gauge(DRIFT_P_VALUE, 1.0, model="churn", feature="age")
    assert [r.getMessage() for r in caplog.records if r.name == metrics.log.name] == [
        "Could not send metric mlops.promotion.churn.promoted",
        "Could not send metric mlops.drift.churn.age.p_value",
    ]


def test_timings_of_a_burst(statsd):
    timings(SERVING_SMOKE_LATENCY, [12.5, 30.0], model="churn")
    assert statsd(2) == ["mlops.serving.churn.smoke_latency_ms:12.500000|ms", "mlops.serving.churn.smoke_latency_ms:30.000000|ms"]


def test_every_metric_is_declared_once_with_a_distinct_prometheus_name():
    assert len({m.template for m in STATSD_METRICS}) == len(STATSD_METRICS)
    assert len({m.prometheus_name for m in STATSD_METRICS}) == len(STATSD_METRICS)
    for metric in STATSD_METRICS:
        assert re.fullmatch(r"mlops_[a-z_]+", metric.prometheus_name)
        assert metric.prometheus_name.endswith("_total") == (metric.kind is MetricKind.COUNTER)


def test_mapping_numbers_labels_after_airflows_prefix():
    rule = DRIFT_P_VALUE.mapping()
    assert rule == {"match": "*.mlops.drift.*.*.p_value", "name": "mlops_drift_p_value", "labels": {"model": "$2", "feature": "$3"}}
    assert SERVING_SMOKE_LATENCY.mapping()["observer_type"] == "histogram"
    assert len(statsd_mapping()["mappings"]) == len(STATSD_METRICS)


def test_the_readme_lists_every_metric():
    assert markdown_table() in (REPO_ROOT / "docs" / "deployment.md").read_text(), (
        "the docs' metrics table (docs/deployment.md) is stale: python -m mlops_airflow.observability.metrics table"
    )


def test_no_code_sends_a_name_outside_the_list():
    """Every send goes through a declared StatsdMetric: no free-form names left in the package."""
    package = REPO_ROOT / "plugins" / "mlops_airflow"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "metrics.py" and re.search(r"\b(gauge|incr|timings)\(\s*[\"f]", path.read_text())
    ]
    assert offenders == []
