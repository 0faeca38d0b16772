"""After a drift-triggered release: re-score the drifted days with the new champion, by an Airflow backfill."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.partitions import parse_day

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.airflow_api import AirflowClient

DEFAULT_AIRFLOW_API_CONN_ID = "airflow_api"


# Answers after which the same request is asked again.
SERVER_ERRORS = frozenset({500, 502, 503, 504})


def airflow_client(conn_id: str) -> AirflowClient:
    """A REST API client from an Airflow connection: host (with scheme and port), login, password."""
    from airflow.sdk import BaseHook

    from mlops_airflow.airflow_api import AirflowClient

    connection = BaseHook.get_connection(conn_id)
    host = connection.host or ""
    if not host.startswith(("http://", "https://")):
        host = f"{connection.schema or 'http'}://{host}"
    if connection.port:
        host = f"{host}:{connection.port}"
    if not connection.login or not connection.password:
        raise AirflowFailException(f"connection {conn_id!r} needs a login and a password for Airflow's REST API")
    return AirflowClient(host, connection.login, connection.password)


def same_window(backfill: dict[str, Any], start: dt.date, end: dt.date) -> bool:
    return parse_day(backfill["from_date"]) == start and parse_day(backfill["to_date"]) == end


class BackfillScoresOperator(BaseOperator):
    """
    Backfill ``batch_score_<model>`` over the drifted days, once, through Airflow's REST API.

    Runs after a successful switch in a ``retrain_<model>`` run that drift triggered (its
    ``drift`` Param holds the summary); any other run has nothing to re-score and skips.
    The backfill covers the logical dates from the drift onset to the drift window's last
    day and reprocesses runs that already completed, so the days the old model scored are
    scored again by the new champion. A backfill of that DAG over the same days that
    already exists is not created twice. An API that answers with a server error (502, 503
    or 504: busy or restarting; 500: on SQLite, "database is locked" can surface as
    "Database error") is asked again, up to ``unavailable_attempts`` times with doubling
    delays: the find-or-create is idempotent, so a second ask never makes a second backfill. When the API refuses otherwise (for example while another backfill of
    the DAG is running), the task fails with the API's answer and Airflow retries it.

    :param batch_score_dag_id: the DAG to backfill.
    :param airflow_conn_id: an HTTP connection to the Airflow API server, with login and password.
    :param unavailable_attempts: how many times to ask an API that answers with a server error.
    :param unavailable_delay: seconds before the second attempt; doubled for each one after.
    """

    def __init__(
        self,
        *,
        batch_score_dag_id: str,
        airflow_conn_id: str = DEFAULT_AIRFLOW_API_CONN_ID,
        unavailable_attempts: int = 5,
        unavailable_delay: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_score_dag_id = batch_score_dag_id
        self.airflow_conn_id = airflow_conn_id
        self.unavailable_attempts = unavailable_attempts
        self.unavailable_delay = unavailable_delay

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.airflow_api import AirflowApiError

        drift = context["params"].get("drift")
        if not drift:
            raise AirflowSkipException("not a drift-triggered run: there are no drifted days to re-score")
        try:
            start, end = parse_day(drift["backfill_start"]), parse_day(drift["backfill_end"])
        except (KeyError, TypeError, ValueError) as err:
            raise AirflowFailException(f"the drift Param has no valid backfill_start/backfill_end: {err}") from err
        if end < start:
            raise AirflowFailException(f"backfill_end {end} is before backfill_start {start}")
        client = airflow_client(self.airflow_conn_id)
        attempt = 1
        while True:
            try:
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

    def _find_or_create(self, client: AirflowClient, start: dt.date, end: dt.date) -> dict[str, Any]:
        existing = next((b for b in client.backfills(self.batch_score_dag_id) if same_window(b, start, end)), None)
        if existing is not None:
            self.log.info("Backfill %s of %s over %s..%s exists already; not creating another", existing["id"], self.batch_score_dag_id, start, end)
            return {"backfill_id": existing["id"], "from_date": str(start), "to_date": str(end), "created": False}
        backfill = client.create_backfill(self.batch_score_dag_id, start.isoformat(), end.isoformat())
        self.log.info("Backfill %s of %s over %s..%s created", backfill["id"], self.batch_score_dag_id, start, end)
        return {"backfill_id": backfill["id"], "from_date": str(start), "to_date": str(end), "created": True}
