"""Our statsd metrics, sent to the statsd server in Airflow's ``[metrics]`` settings.

Names (all gauges unless noted):

- ``mlops.data_check.<model>.rules_failed``: rules that failed in the last data check
- ``mlops.data_check.<model>.rows``: rows the last data check read

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


def gauge(name: str, value: float) -> None:
    """Send one gauge; never raises."""
    try:
        client = _client()
        if client is not None:
            client.gauge(name, value)
    except Exception:  # a metrics outage must not fail the task
        log.warning("Could not send metric %s", name, exc_info=True)
