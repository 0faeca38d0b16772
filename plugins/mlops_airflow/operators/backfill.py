"""After a drift-triggered release: re-score the drifted days with the new champion, by an Airflow backfill."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.constants import DEFAULT_AIRFLOW_API_CONN_ID
from mlops_airflow.core.partitions import parse_day
from mlops_airflow.exceptions import MlopsError
from mlops_airflow.hooks.airflow_api import AirflowApiHook
from mlops_airflow.specs import DriftSpec
from mlops_airflow.utils.task_args import read_payload
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.core.payloads import DriftSummary
    from mlops_airflow.hooks.airflow_api import AirflowClient

# Answers after which the same request is asked again.
SERVER_ERRORS = frozenset({500, 502, 503, 504})


def same_window(backfill: dict[str, Any], start: dt.date, end: dt.date) -> bool:
    return parse_day(backfill["from_date"]) == start and parse_day(backfill["to_date"]) == end


def drift_window(drift: DriftSummary, max_days: int) -> tuple[dt.date, dt.date]:
    """The days a drift Param asks to re-score, refused when reversed or longer than ``max_days``."""
    start, end = drift.backfill_days
    if end < start:
        raise AirflowFailException(f"the drift window's last day {end} is before its onset {start}")
    days = (end - start).days + 1
    if days > max_days:
        raise AirflowFailException(
            f"the drift Param asks to re-score {start}..{end}, {days} days; drift.max_backfill_days allows {max_days}: not creating that backfill"
        )
    return start, end


class BackfillScoresOperator(FailFastTemplates, BaseOperator):
    """
    Backfill ``batch_score_<model>`` over the drifted days, once, through Airflow's REST API.

    Runs after a successful switch in a ``retrain_<model>`` run that drift triggered (its
    ``drift`` Param holds the summary); any other run has nothing to re-score and skips.
    A run's conf can say anything, so the days are taken only when they are what the drift
    monitor run named in the Param (``monitor_run_id``) recorded (its sensor's XCom, read
    through the API), and when they number at most ``max_backfill_days``; otherwise the task
    fails naming both.
    The backfill covers the logical dates from the drift onset to the drift window's last
    day and reprocesses runs that already completed, so the days the old model scored are
    scored again by the new champion. A backfill of that DAG over the same days that
    already exists is not created twice. An API that answers with a server error (502, 503
    or 504: busy or restarting; 500: on SQLite, "database is locked" can surface as
    "Database error") is asked again, up to ``unavailable_attempts`` times with doubling
    delays: the find-or-create is idempotent, so a second ask never makes a second backfill. When the API refuses otherwise (for example while another backfill of
    the DAG is running), the task fails with the API's answer and Airflow retries it.

    :param batch_score_dag_id: the DAG to backfill.
    :param drift_monitor_dag_id: the DAG whose runs record the drift (``drift_monitor_<model>``).
    :param max_backfill_days: the most days one backfill may cover (the spec's ``drift.max_backfill_days``).
    :param drift_sensor_task_id: the drift monitor's task whose XCom is the drift summary.
    :param airflow_conn_id: an HTTP connection to the Airflow API server, with login and password.
    :param unavailable_attempts: how many times to ask an API that answers with a server error.
    :param unavailable_delay: seconds before the second attempt; doubled for each one after.
    :param in_flight_timeout: how long to wait for runs of the window that are queued or running
        (a backfill would leave them alone, with the old model's scores) before failing the try.
    :param in_flight_poll: seconds between two looks at those runs.
    """

    def __init__(
        self,
        *,
        batch_score_dag_id: str,
        drift_monitor_dag_id: str,
        max_backfill_days: int = DriftSpec.max_backfill_days,
        drift_sensor_task_id: str = "detect_drift",
        airflow_conn_id: str = DEFAULT_AIRFLOW_API_CONN_ID,
        unavailable_attempts: int = 5,
        unavailable_delay: float = 2.0,
        in_flight_timeout: float = 900.0,
        in_flight_poll: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.in_flight_timeout = in_flight_timeout
        self.in_flight_poll = in_flight_poll
        self.batch_score_dag_id = batch_score_dag_id
        self.drift_monitor_dag_id = drift_monitor_dag_id
        self.max_backfill_days = max_backfill_days
        self.drift_sensor_task_id = drift_sensor_task_id
        self.airflow_conn_id = airflow_conn_id
        self.unavailable_attempts = unavailable_attempts
        self.unavailable_delay = unavailable_delay

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.payloads import DriftSummary
        from mlops_airflow.hooks.airflow_api import AirflowApiError

        drift = context["params"].get("drift")
        if not drift:
            raise AirflowSkipException("not a drift-triggered run: there are no drifted days to re-score")
        start, end = drift_window(read_payload(DriftSummary, drift, "the drift Param"), self.max_backfill_days)
        monitor_run_id = drift.get("monitor_run_id")
        if not monitor_run_id or not isinstance(monitor_run_id, str):
            raise AirflowFailException(
                f"the drift Param asks to re-score {start}..{end} but names no {self.drift_monitor_dag_id} run (monitor_run_id) that recorded that drift"
            )
        client = AirflowApiHook(self.airflow_conn_id).get_conn()
        attempt = 1
        while True:
            try:
                self._check_recorded(client, monitor_run_id, start, end)
                return self._find_or_create(client, start, end)
            except AirflowApiError as err:
                if err.status not in SERVER_ERRORS or attempt >= self.unavailable_attempts:
                    raise MlopsError(f"Airflow's API refused the backfill of {self.batch_score_dag_id} over {start}..{end}: {err}") from err
                # Busy or failing for a moment; asking again finds a backfill this attempt may have created.
                delay = self.unavailable_delay * 2 ** (attempt - 1)
                self.log.warning("Airflow's API is unavailable (attempt %d of %d), asking again in %.0f s: %s", attempt, self.unavailable_attempts, delay, err)
                time.sleep(delay)
                attempt += 1
            except OSError as err:
                raise MlopsError(f"Airflow's API at connection {self.airflow_conn_id!r} is unreachable: {err}") from err

    def _check_recorded(self, client: AirflowClient, monitor_run_id: str, start: dt.date, end: dt.date) -> None:
        """Refuse days other than those the drift monitor run recorded."""
        from mlops_airflow.core.payloads import DriftSummary

        record = client.xcom(self.drift_monitor_dag_id, monitor_run_id, self.drift_sensor_task_id)
        where = f"{self.drift_monitor_dag_id} run {monitor_run_id!r} ({self.drift_sensor_task_id})"
        if not isinstance(record, dict):
            raise AirflowFailException(f"the drift Param asks to re-score {start}..{end}, but {where} recorded no drift")
        recorded = tuple(day.isoformat() for day in read_payload(DriftSummary, record, where).backfill_days)
        if recorded != (start.isoformat(), end.isoformat()):
            raise AirflowFailException(
                f"the drift Param asks to re-score {start}..{end}, but {where} recorded the drifted days {recorded[0]}..{recorded[1]}: not creating that backfill"
            )

    def _wait_for_runs_in_flight(self, client: AirflowClient, start: dt.date, end: dt.date) -> None:
        """
        Wait until no run of the window is queued or running.

        A backfill reprocesses completed runs and leaves one in flight alone: a scheduled
        run still scoring one of these days with the old champion would keep the old
        model's predictions (seen under load in the demo: two days re-scored, the third not).
        """
        deadline = time.monotonic() + self.in_flight_timeout
        while True:
            busy = client.runs_in_flight(self.batch_score_dag_id, start.isoformat(), end.isoformat())
            if not busy:
                return
            names = ", ".join(sorted(r["dag_run_id"] for r in busy))
            if time.monotonic() >= deadline:
                raise MlopsError(
                    f"runs of {self.batch_score_dag_id} over {start}..{end} are still in flight after {self.in_flight_timeout:.0f} s ({names}); retry"
                )
            self.log.info("Waiting for %s to finish before backfilling %s..%s, so that the backfill scores those days again", names, start, end)
            time.sleep(self.in_flight_poll)

    def _find_or_create(self, client: AirflowClient, start: dt.date, end: dt.date) -> dict[str, Any]:
        existing = next((b for b in client.backfills(self.batch_score_dag_id) if same_window(b, start, end)), None)
        if existing is not None:
            self.log.info("Backfill %s of %s over %s..%s exists already; not creating another", existing["id"], self.batch_score_dag_id, start, end)
            backfill, created = existing, False
        else:
            self._wait_for_runs_in_flight(client, start, end)
            backfill, created = client.create_backfill(self.batch_score_dag_id, start.isoformat(), end.isoformat()), True
            self.log.info("Backfill %s of %s over %s..%s created", backfill["id"], self.batch_score_dag_id, start, end)
        rescored = self._rescore_what_the_backfill_left_out(client, start, end, backfill)
        return {"backfill_id": backfill["id"], "from_date": str(start), "to_date": str(end), "created": created, "rescored": rescored}

    def _rescore_what_the_backfill_left_out(self, client: AirflowClient, start: dt.date, end: dt.date, backfill: dict[str, Any]) -> list[str]:
        """
        Run again every day of the window that the backfill will not score; the run ids.

        On SQLite, Airflow can commit a backfill and answer 503 "database is locked" before it
        has taken over every day (seen in the demo: two days re-scored, the third kept the
        old model's scores, and the retry found the backfill "exists already"). A day whose run
        finished before the backfill existed is cleared, so it runs again with the new
        champion; a day with no run at all gets one. Runs the backfill queued are left to it.
        """
        from mlops_airflow.hooks.airflow_api import AirflowApiError

        created_at = dt.datetime.fromisoformat(str(backfill["created_at"]).replace("Z", "+00:00"))
        runs: dict[str, list[dict[str, Any]]] = {}
        for run in client.runs_between(self.batch_score_dag_id, start.isoformat(), end.isoformat()):
            runs.setdefault(str(run["logical_date"])[:10], []).append(run)
        rescored = []
        day = start
        while day <= end:
            found = runs.get(day.isoformat(), [])
            if not found:
                run_id = f"rescore__{day.isoformat()}__backfill{backfill['id']}"
                self.log.warning("Backfill %s has no run for %s; triggering %s", backfill["id"], day, run_id)
                try:
                    client.trigger(self.batch_score_dag_id, logical_date=f"{day.isoformat()}T00:00:00Z", run_id=run_id)
                except AirflowApiError as err:
                    if err.status != 409:  # 409: a retry of this task triggered it already
                        raise
                rescored.append(run_id)
            for run in found:
                ended = run.get("end_date")
                if run["state"] in ("success", "failed") and ended and dt.datetime.fromisoformat(str(ended).replace("Z", "+00:00")) < created_at:
                    self.log.warning("%s (%s) finished before backfill %s existed and was not taken over; clearing it", run["dag_run_id"], day, backfill["id"])
                    client.clear_run(self.batch_score_dag_id, run["dag_run_id"])
                    rescored.append(run["dag_run_id"])
            day += dt.timedelta(days=1)
        return rescored
