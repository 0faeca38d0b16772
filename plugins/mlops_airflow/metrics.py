"""Our statsd metrics, sent to the statsd server in Airflow's ``[metrics]`` settings.

Names (all gauges unless noted):

- ``mlops.data_check.<model>.rules_failed``: rules that failed in the last data check
- ``mlops.data_check.<model>.rows``: rows the last data check read
- ``mlops.promotion.<model>.challenger.<metric>`` / ``.champion.<metric>``: the primary
  metric of both versions on the last evaluation window
- ``mlops.promotion.<model>.promoted`` / ``.rejected`` (counters): promotion decisions
- ``mlops.serving.<model>.switch`` / ``.rollback`` (counters): live traffic moved, releases undone
- ``mlops.serving.<model>.smoke_latency_ms`` (timers): each request of the smoke test's burst
- ``mlops.drift.<model>.<feature>.ks_stat`` (numeric) / ``.tvd`` (categorical) and
  ``.p_value``: each drift check's effect size and p-value per feature
- ``mlops.drift.<model>.drifted_features``: how many features drifted in the last check

Metrics are best effort: when ``[metrics] statsd_on`` is off nothing is sent, and a
network error is logged, never raised, so a metrics outage cannot fail a task.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def metric_name(*parts: str) -> str:
    """``mlops.<part>.<part>...`` with characters statsd treats specially replaced."""
    return ".".join(["mlops", *(_UNSAFE.sub("_", str(p)) for p in parts)])


def _client():
    from airflow.sdk import conf

    if not conf.getboolean("metrics", "statsd_on", fallback=False):
        return None
    from statsd import StatsClient

    return StatsClient(
        host=conf.get("metrics", "statsd_host", fallback="localhost"),
        port=conf.getint("metrics", "statsd_port", fallback=8125),
    )


def _send(name: str, send) -> None:
    """Hand one statsd client to ``send``; a metrics outage is logged, never raised."""
    try:
        client = _client()
        if client is not None:
            send(client)
    except Exception:  # a metrics outage must not fail the task
        log.warning("Could not send metric %s", name, exc_info=True)


def gauge(name: str, value: float) -> None:
    """Send one gauge; never raises."""
    _send(name, lambda client: client.gauge(name, value))


def incr(name: str, count: int = 1) -> None:
    """Increase one counter; never raises."""
    _send(name, lambda client: client.incr(name, count))


def timings(name: str, milliseconds: list[float]) -> None:
    """Send timer values (one per request of a burst) through one client; never raises."""

    def send(client) -> None:
        with client.pipeline() as pipe:
            for value in milliseconds:
                pipe.timing(name, value)

    _send(name, send)
