"""statsd metrics reach a real UDP listener, and never fail the caller."""

from __future__ import annotations

from mlops_airflow.metrics import gauge, incr, metric_name, timings


def test_names_are_safe():
    assert metric_name("promotion", "churn v2", "roc_auc") == "mlops.promotion.churn_v2.roc_auc"


def test_counter_and_gauge(statsd):
    incr(metric_name("promotion", "churn", "promoted"))
    gauge(metric_name("promotion", "churn", "challenger", "roc_auc"), 0.8125)
    assert statsd(2) == ["mlops.promotion.churn.challenger.roc_auc:0.8125|g", "mlops.promotion.churn.promoted:1|c"]


def test_off_by_default_and_never_raises(monkeypatch):
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "host.invalid")
    incr("mlops.x")  # an unresolvable host is logged, not raised
    gauge("mlops.y", 1.0)


def test_timings_of_a_burst(statsd):
    timings("mlops.serving.churn.smoke_latency_ms", [12.5, 30.0])
    assert statsd(2) == ["mlops.serving.churn.smoke_latency_ms:12.500000|ms", "mlops.serving.churn.smoke_latency_ms:30.000000|ms"]
