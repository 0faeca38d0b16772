"""Our statsd metrics: one documented list, sent through Airflow's ``[metrics]`` settings.

Every metric we send is declared once in :data:`STATSD_METRICS`, with its kind, the Prometheus
name the statsd-exporter mapping gives it and what it means. Names on the wire are
``<statsd_prefix>.mlops.<area>.<model>...`` (the prefix is Airflow's, ``airflow`` by
default); the docs' table (docs/deployment.md), the statsd-exporter mapping of the Helm values and of the
compose stack, and the Grafana dashboard are all checked against this list by the tests, so
a renamed metric breaks the build rather than a dashboard.

``python -m mlops_airflow.observability.metrics mapping`` prints the statsd-exporter mapping;
``python -m mlops_airflow.observability.metrics table`` prints the docs' table.

Metrics are best effort: when ``[metrics] statsd_on`` is off nothing is sent, and a network
error is logged, never raised, so a metrics outage cannot fail a task.
"""

from __future__ import annotations

import enum
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "mlops"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PLACEHOLDER = re.compile(r"<([a-z_]+)>")
# Timer buckets in seconds (statsd-exporter turns statsd's milliseconds into seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class MetricKind(enum.StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    TIMER = "timer"


@dataclass(frozen=True)
class StatsdMetric:
    """One metric: ``pattern`` is its name after ``mlops.``, with ``<label>`` placeholders."""

    pattern: str
    kind: MetricKind
    prometheus_name: str
    description: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.pattern))

    @property
    def template(self) -> str:
        """The documented name, ``mlops.drift.<model>.<feature>.p_value``."""
        return f"{NAMESPACE}.{self.pattern}"

    @property
    def statsd_glob(self) -> str:
        """The statsd-exporter glob: any one-component prefix, then the name with ``*`` per label."""
        return "*." + _PLACEHOLDER.sub("*", self.template)

    def matches(self, name: str) -> bool:
        """Whether a statsd name (without Airflow's prefix) is an instance of this metric."""
        parts = [re.escape(part) for part in _PLACEHOLDER.split(self.template)[::2]]
        return re.fullmatch("[A-Za-z0-9_-]+".join(parts), name) is not None

    def name(self, /, **labels: Any) -> str:
        """The statsd name (without Airflow's prefix); label values are made statsd-safe."""
        if set(labels) != set(self.labels):
            raise ValueError(f"metric {self.template} takes labels {list(self.labels)}, got {sorted(labels)}")
        return _PLACEHOLDER.sub(lambda match: _UNSAFE.sub("_", str(labels[match.group(1)])), self.template)

    def mapping(self) -> dict[str, Any]:
        """This metric's statsd-exporter mapping rule (glob matching; ``$1`` is Airflow's prefix)."""
        rule: dict[str, Any] = {
            "match": self.statsd_glob,
            "name": self.prometheus_name,
            "labels": {label: f"${index}" for index, label in enumerate(self.labels, start=2)},
        }
        if self.kind is MetricKind.TIMER:
            rule["observer_type"] = "histogram"
            rule["histogram_options"] = {"buckets": list(LATENCY_BUCKETS)}
        return rule


STATSD_METRICS: tuple[StatsdMetric, ...] = (
    DATA_CHECK_RULES_FAILED := StatsdMetric(
        "data_check.<model>.rules_failed", MetricKind.GAUGE, "mlops_data_check_rules_failed", "rules that failed in the last data check"
    ),
    DATA_CHECK_ROWS := StatsdMetric("data_check.<model>.rows", MetricKind.GAUGE, "mlops_data_check_rows", "rows the last data check read"),
    PROMOTION_PRIMARY_METRIC := StatsdMetric(
        "promotion.<model>.<role>.<metric>",
        MetricKind.GAUGE,
        "mlops_promotion_primary_metric",
        "the primary metric of the challenger and the champion (`role`) on the last evaluation window",
    ),
    PROMOTION_PROMOTED := StatsdMetric("promotion.<model>.promoted", MetricKind.COUNTER, "mlops_promotion_promoted_total", "challengers promoted to champion"),
    PROMOTION_REJECTED := StatsdMetric("promotion.<model>.rejected", MetricKind.COUNTER, "mlops_promotion_rejected_total", "challengers not promoted"),
    SERVING_SWITCH := StatsdMetric("serving.<model>.switch", MetricKind.COUNTER, "mlops_serving_switches_total", "live traffic moved to the other colour"),
    SERVING_ROLLBACK := StatsdMetric("serving.<model>.rollback", MetricKind.COUNTER, "mlops_serving_rollbacks_total", "releases undone"),
    SERVING_SMOKE_LATENCY := StatsdMetric(
        "serving.<model>.smoke_latency_ms",
        MetricKind.TIMER,
        "mlops_serving_smoke_latency_seconds",
        "each request of the smoke test's burst on the idle colour",
    ),
    RELEASE_CANARY_WEIGHT := StatsdMetric(
        "release.<model>.canary_weight", MetricKind.GAUGE, "mlops_release_canary_weight", "percent of live traffic on the new colour during a canary"
    ),
    RELEASE_ANALYSIS := StatsdMetric(
        "release.<model>.<strategy>.<verdict>",
        MetricKind.COUNTER,
        "mlops_release_analyses_total",
        "canary steps and shadow replays judged, by verdict (successful, failed, inconclusive)",
    ),
    RELEASE_SHADOW_AGREEMENT := StatsdMetric(
        "release.<model>.shadow_agreement",
        MetricKind.GAUGE,
        "mlops_release_shadow_agreement",
        "share of replayed rows on which the new colour predicts what the live colour did",
    ),
    RELEASE_OUTCOME := StatsdMetric(
        "release_outcome.<model>.<strategy>.<verdict>",
        MetricKind.COUNTER,
        "mlops_release_outcomes_total",
        "A/B tests and shadow replays judged on their live outcomes once the labels arrived, by verdict",
    ),
    DRIFT_KS_STAT := StatsdMetric(
        "drift.<model>.<feature>.ks_stat", MetricKind.GAUGE, "mlops_drift_ks_stat", "KS statistic D of a numeric feature in the last drift check"
    ),
    DRIFT_TVD := StatsdMetric(
        "drift.<model>.<feature>.tvd", MetricKind.GAUGE, "mlops_drift_tvd", "total variation distance of a categorical feature in the last drift check"
    ),
    DRIFT_P_VALUE := StatsdMetric("drift.<model>.<feature>.p_value", MetricKind.GAUGE, "mlops_drift_p_value", "a feature's p-value in the last drift check"),
    DRIFT_DOMAIN_AUC := StatsdMetric(
        "drift.<model>.domain_auc",
        MetricKind.GAUGE,
        "mlops_drift_domain_auc",
        "held-out AUC of a classifier telling the last drift check's window from the reference sample (0.5: no difference)",
    ),
    DRIFT_DOMAIN_P_VALUE := StatsdMetric(
        "drift.<model>.domain_p_value", MetricKind.GAUGE, "mlops_drift_domain_p_value", "the domain classifier test's p-value in the last drift check"
    ),
    DRIFT_DRIFTED_FEATURES := StatsdMetric(
        "drift.<model>.drifted_features",
        MetricKind.GAUGE,
        "mlops_drift_drifted_features",
        "features that drifted in the last drift check (the domain classifier counts as one)",
    ),
    PERFORMANCE_REALIZED := StatsdMetric(
        "performance.<model>.<metric>.realized",
        MetricKind.GAUGE,
        "mlops_performance_realized",
        "the champion's metric on its predictions whose labels arrived, over the last performance check's labelled window",
    ),
    PERFORMANCE_ESTIMATED := StatsdMetric(
        "performance.<model>.<metric>.estimated",
        MetricKind.GAUGE,
        "mlops_performance_estimated",
        "the champion's ROC AUC and accuracy on the newest day, estimated before its labels arrive",
    ),
    PERFORMANCE_LABELLED_ROWS := StatsdMetric(
        "performance.<model>.labelled_rows",
        MetricKind.GAUGE,
        "mlops_performance_labelled_rows",
        "the champion's predictions with a label in the labelled window",
    ),
    PERFORMANCE_PREDICTION_SHIFT := StatsdMetric(
        "performance.<model>.prediction_shift",
        MetricKind.GAUGE,
        "mlops_performance_prediction_shift",
        "KS statistic D of the champion's scores on the newest day against its validation scores (prediction drift)",
    ),
    PERFORMANCE_DECAYED := StatsdMetric(
        "performance.<model>.decayed", MetricKind.GAUGE, "mlops_performance_decayed", "1 when the last performance check found the champion decayed"
    ),
    ALERT_DELIVERY_FAILED := StatsdMetric(
        "alerts.<dag>.delivery_failed",
        MetricKind.COUNTER,
        "mlops_alert_delivery_failures_total",
        "failure alerts the webhook did not take (the alert is in the task log instead)",
    ),
)


def find_metric(name: str) -> StatsdMetric | None:
    """The declared metric a statsd name (without Airflow's prefix) belongs to, if any."""
    return next((metric for metric in STATSD_METRICS if metric.matches(name)), None)


def _client():
    from airflow.sdk import conf

    if not conf.getboolean("metrics", "statsd_on", fallback=False):
        return None
    from statsd import StatsClient

    return StatsClient(
        host=conf.get("metrics", "statsd_host", fallback="localhost"),
        port=conf.getint("metrics", "statsd_port", fallback=8125),
        prefix=conf.get("metrics", "statsd_prefix", fallback="airflow") or None,
    )


def _send(name: str, send) -> None:
    """Hand one statsd client to ``send``; a metrics outage is logged, never raised."""
    try:
        client = _client()
        if client is not None:
            send(client)
    except Exception:  # a metrics outage must not fail the task
        log.warning("Could not send metric %s", name, exc_info=True)


def gauge(metric: StatsdMetric, value: float, /, **labels: Any) -> None:
    """Set a gauge; never raises."""
    name = metric.name(**labels)
    _send(name, lambda client: client.gauge(name, value))


def incr(metric: StatsdMetric, count: int = 1, /, **labels: Any) -> None:
    """Increase a counter; never raises."""
    name = metric.name(**labels)
    _send(name, lambda client: client.incr(name, count))


def timings(metric: StatsdMetric, milliseconds: Iterable[float], /, **labels: Any) -> None:
    """Send timer values (one per request of a burst) through one client; never raises."""
    name = metric.name(**labels)

    def send(client) -> None:
        with client.pipeline() as pipe:
            for value in milliseconds:
                pipe.timing(name, value)

    _send(name, send)


def statsd_mapping() -> dict[str, Any]:
    """The statsd-exporter mapping of every metric, as its YAML config file holds it."""
    return {"mappings": [metric.mapping() for metric in STATSD_METRICS]}


def markdown_table() -> str:
    """The docs' table of metrics (docs/deployment.md)."""
    rows = ["| statsd name | kind | Prometheus (statsd-exporter) | meaning |", "|---|---|---|---|"]
    for metric in STATSD_METRICS:
        labels = ", ".join(metric.labels)
        rows.append(f"| `{metric.template}` | {metric.kind} | `{metric.prometheus_name}{{{labels}}}` | {metric.description} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    import yaml

    command = (argv if argv is not None else sys.argv[1:]) or ["table"]
    if command == ["mapping"]:
        sys.stdout.write(yaml.safe_dump(statsd_mapping(), sort_keys=False))
    elif command == ["table"]:
        sys.stdout.write(markdown_table() + "\n")
    else:
        sys.stderr.write("usage: python -m mlops_airflow.observability.metrics [table|mapping]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
