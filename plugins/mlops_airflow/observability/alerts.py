"""Failure and deadline alerts: a short, useful message to a webhook, from every task of every model DAG.

``on_failure_callback`` of the DAGs' default arguments is :class:`FailureAlert`. It posts
JSON (``text`` plus the fields one by one, the shape Slack, Mattermost and most chat
webhooks take) to the connection ``mlops_alerts``: its ``host`` is the webhook URL and a
password, when set, is sent as a bearer token. The message names the DAG, task, run and
try, the error (which names the failing rule or gate: our exceptions do), and a link to
the task's log.

An alert channel can be down too. The callback never raises and returns within
``timeout`` seconds whatever the webhook does (answers 500, hangs, refuses connections):
the post runs in a daemon thread that is waited on for at most that long. When delivery
fails, the alert is written to the task log at ERROR level and the counter
``mlops.alerts.<dag>.delivery_failed`` goes up, so a Prometheus alert on it still reaches
a person. The webhook URL and token are never logged.

:func:`deadline_missed` is the Deadline Alert callback of ``retrain_<model>`` and
``rollback_<model>`` (a run not finished ``schedules.*_deadline_minutes`` after it was queued):
Airflow's scheduler notices the missed deadline and its triggerer awaits the callback, which
sends the same kind of message through the same connection, with the same guarantees.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mlops_airflow.observability.metrics import ALERT_DELIVERY_FAILED, incr

log = logging.getLogger(__name__)

DEFAULT_ALERTS_CONN_ID = "mlops_alerts"
_MAX_ERROR_CHARS = 600


class FailureAlert:
    """
    ``on_failure_callback``: post a failure to the alert webhook; never raises, bounded in time.

    :param conn_id: the webhook's Airflow connection (missing: the alert only goes to the log).
    :param timeout: the most seconds the callback may take, whatever the webhook does.
    """

    def __init__(self, conn_id: str = DEFAULT_ALERTS_CONN_ID, timeout: float = 5.0) -> None:
        self.conn_id = conn_id
        self.timeout = timeout

    def __call__(self, context: dict[str, Any]) -> None:
        try:
            message = alert_message(context)
        except Exception:  # a callback must never fail the task's bookkeeping
            log.exception("Could not build the failure alert")
            return
        dag_id = message["dag_id"] or "unknown"
        try:
            outcome = self._deliver(message)
        except Exception as err:  # never raise from a callback
            outcome = f"{type(err).__name__}"
        if outcome == "delivered":
            log.info("Failure alert sent to connection %s", self.conn_id)
            return
        incr(ALERT_DELIVERY_FAILED, dag=dag_id)
        log.error("FAILURE ALERT (not delivered: %s): %s", outcome, message["text"])

    def _webhook(self) -> tuple[str, dict[str, str]] | None:
        from airflow.sdk import BaseHook

        try:
            connection = BaseHook.get_connection(self.conn_id)
        except Exception:  # no connection configured: the log is the channel
            return None
        url = connection.host or ""
        if "://" not in url:
            url = f"{connection.schema or 'https'}://{url}"
        if connection.port and urllib.parse.urlsplit(url).port is None:
            parts = urllib.parse.urlsplit(url)
            url = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.netloc}:{connection.port}"))
        headers = {"Content-Type": "application/json"}
        if connection.password:
            headers["Authorization"] = f"Bearer {connection.password}"
        return url, headers

    def _deliver(self, message: dict[str, Any]) -> str:
        """``delivered``, or why not; returns within ``timeout`` seconds."""
        webhook = self._webhook()
        if webhook is None:
            return f"no connection {self.conn_id}"
        url, headers = webhook
        result: list[str] = []

        def post() -> None:
            request = urllib.request.Request(url, data=json.dumps(message).encode(), headers=headers, method="POST")  # noqa: S310 - the operator's webhook
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    result.append("delivered" if 200 <= response.status < 300 else f"HTTP {response.status}")
            except urllib.error.HTTPError as err:
                result.append(f"HTTP {err.code}")
            except Exception as err:  # refused, reset, DNS, TLS: all mean not delivered
                result.append(type(err).__name__)

        sender = threading.Thread(target=post, name="mlops-failure-alert", daemon=True)
        sender.start()
        sender.join(self.timeout)
        return result[0] if result else f"no answer within {self.timeout:.0f} s"


def alert_message(context: dict[str, Any]) -> dict[str, Any]:
    """The alert for one failed task try, from the callback's context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None)
    task_id = getattr(ti, "task_id", None)
    run_id = getattr(ti, "run_id", None)
    try_number = getattr(ti, "try_number", None)
    error = context.get("exception")
    detail = f"{type(error).__name__}: {error}" if error is not None else "no exception recorded"
    detail = detail.strip().splitlines()[0][:_MAX_ERROR_CHARS] if detail.strip() else detail
    log_url = _log_url(ti)
    text = f"[mlops-airflow] {dag_id}.{task_id} failed (run {run_id}, try {try_number}): {detail}" + (f" | log: {log_url}" if log_url else "")
    return {"text": text, "dag_id": dag_id, "task_id": task_id, "run_id": run_id, "try_number": try_number, "error": detail, "log_url": log_url}


def _log_url(ti: Any) -> str | None:
    url = getattr(ti, "log_url", None)
    if url:
        return str(url)
    base = _api_base_url()
    if not base or ti is None:
        return None
    run = urllib.parse.quote(str(ti.run_id), safe="")
    return f"{base}/dags/{ti.dag_id}/runs/{run}/tasks/{ti.task_id}"


async def deadline_missed(context: dict[str, Any], *, limit_minutes: float, conn_id: str = DEFAULT_ALERTS_CONN_ID, timeout: float = 5.0) -> str:
    """The Deadline Alert callback (awaited in the triggerer): post that a run is late; never raises, bounded in time; what became of it."""
    import asyncio

    try:
        message = deadline_message(context, limit_minutes)
    except Exception:  # a callback must never fail the triggerer's bookkeeping
        log.exception("Could not build the deadline alert")
        return "not built"
    channel = FailureAlert(conn_id=conn_id, timeout=timeout)
    try:
        outcome = await asyncio.to_thread(channel._deliver, message)  # the connection lookup and the post block: off the event loop
    except Exception as err:  # never raise from a callback
        outcome = type(err).__name__
    if outcome == "delivered":
        log.info("Deadline alert sent to connection %s", conn_id)
    else:
        incr(ALERT_DELIVERY_FAILED, dag=message["dag_id"] or "unknown")
        log.error("DEADLINE ALERT (not delivered: %s): %s", outcome, message["text"])
    return outcome


def deadline_message(context: dict[str, Any], limit_minutes: float) -> dict[str, Any]:
    """The alert for a run past its deadline, from the simple context Airflow gives a deadline callback (``dag_run``, ``deadline``)."""
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id, run_id, state = dag_run.get("dag_id"), dag_run.get("dag_run_id") or dag_run.get("run_id"), dag_run.get("state")
    queued = dag_run.get("queued_at")
    text = (
        f"[mlops-airflow] {dag_id} run {run_id} is not finished {limit_minutes:g} min after it was queued"
        f" (queued {queued}, deadline {deadline.get('deadline_time')}, state {state})"
    )
    base = _api_base_url()
    log_url = f"{base}/dags/{dag_id}/runs/{urllib.parse.quote(str(run_id), safe='')}" if base and dag_id and run_id else None
    if log_url:
        text += f" | run: {log_url}"
    return {
        "text": text,
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "queued_at": queued,
        "deadline": str(deadline.get("deadline_time")),
        "log_url": log_url,
    }


def _api_base_url() -> str | None:
    try:
        from airflow.sdk import conf

        return conf.get("api", "base_url", fallback="").rstrip("/") or None
    except Exception:  # no configuration at hand: no link
        return None
