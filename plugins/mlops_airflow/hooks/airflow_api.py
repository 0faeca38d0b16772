"""Airflow's REST API v2: a small client (token, trigger, wait, task states, backfills) and its hook.

The client is standard library only, so the demo and the end-to-end tests need nothing
extra; :class:`AirflowApiHook` builds one from an Airflow connection for the tasks that
talk to the API (the backfill, the promotion's read of the approval record).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import DEFAULT_AIRFLOW_API_CONN_ID

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# A read that gets no answer, or a gateway's 502/503/504, is tried again: polls must outlast a busy
# API server (one answered nothing for 30 s on a loaded 2-core machine and ended a whole demo).
# A write is sent once: trying a trigger again could start a second run.
GET_ATTEMPTS = 3
TOKEN_PATH = "/auth/token"  # noqa: S105 - a URL path, not a secret
RETRY_PAUSE_SECONDS = 1.0
TRANSIENT_STATUSES = frozenset({502, 503, 504})


class AirflowApiError(RuntimeError):
    """The API answered with an error; the message carries the status and the body."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status = status


class AirflowClient:
    """Airflow's REST API with a bearer token from ``POST /auth/token``."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Airflow base URL must be http(s), got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, *, authenticated: bool = True, refreshed: bool = False) -> Any:
        attempts = GET_ATTEMPTS if method == "GET" or path == TOKEN_PATH else 1  # a token request changes nothing
        attempt = 1
        while True:
            try:
                return self._send(method, path, body, authenticated=authenticated, refreshed=refreshed)
            except AirflowApiError as err:
                if err.status not in TRANSIENT_STATUSES or attempt >= attempts:
                    raise
            except (TimeoutError, ConnectionError, urllib.error.URLError):  # no answer (an HTTP error is an AirflowApiError)
                if attempt >= attempts:
                    raise
            time.sleep(RETRY_PAUSE_SECONDS * attempt)
            attempt += 1

    def _send(self, method: str, path: str, body: Any, *, authenticated: bool, refreshed: bool) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if authenticated:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)  # noqa: S310 - http(s) checked in __init__
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - our own base URL
                payload = response.read()
        except urllib.error.HTTPError as err:
            if err.code == 401 and authenticated and not refreshed:
                self._token = None  # expired: fetch a new token, once; a fresh token refused too is a 401
                return self._send(method, path, body, authenticated=True, refreshed=True)
            raise AirflowApiError(err.code, method, path, err.read().decode(errors="replace")) from err
        return json.loads(payload) if payload else None

    def token(self) -> str:
        if self._token is None:
            answer = self._request("POST", TOKEN_PATH, {"username": self.username, "password": self.password}, authenticated=False)
            self._token = answer["access_token"]
        return self._token

    def ensure_pool(self, name: str, slots: int, description: str = "") -> None:
        """Create the pool, or set its slots and description when it exists."""
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        try:
            self._request("POST", "/api/v2/pools", body)
        except AirflowApiError as err:
            if err.status != 409:
                raise
            self._request("PATCH", f"/api/v2/pools/{urllib.parse.quote(name, safe='')}", body)

    def ensure_connection(self, conn_id: str, **fields: Any) -> None:
        """Create the connection, or replace its fields when it exists (``conn_type``, ``host``, ``port``, ``password``, ...)."""
        body = {"connection_id": conn_id, **fields}
        try:
            self._request("POST", "/api/v2/connections", body)
        except AirflowApiError as err:
            if err.status != 409:
                raise
            self._request("PATCH", f"/api/v2/connections/{urllib.parse.quote(conn_id, safe='')}", body)

    def wait_for_task_state(self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 600.0, poll: float = 2.0) -> str:
        """Poll one task instance until its state is one of ``states``; return that state."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = next((t["state"] for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id), None)
            if state in states:
                return state
            time.sleep(poll)
        raise TimeoutError(f"{dag_id}.{task_id} in {run_id} is {state!r} after {timeout:.0f} s, not one of {sorted(states)}")

    def respond(self, dag_id: str, run_id: str, task_id: str, options: list[str]) -> dict:
        """Answer a human-in-the-loop task (what *Required actions* in the UI does)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails"
        return self._request("PATCH", path, {"chosen_options": options})

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str) -> dict | None:
        """The human-in-the-loop record of a task instance (its current try), or ``None`` when it has none."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails"
        try:
            return self._request("GET", path)
        except AirflowApiError as err:
            if err.status == 404:
                return None
            raise

    def get_dag(self, dag_id: str) -> dict | None:
        try:
            return self._request("GET", f"/api/v2/dags/{dag_id}")
        except AirflowApiError as err:
            if err.status == 404:
                return None
            raise

    def import_errors(self) -> list[dict]:
        return self._request("GET", "/api/v2/importErrors")["import_errors"]

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> dict:
        """Wait until the dag processor has parsed ``dag_id``; report import errors if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            time.sleep(2.0)
        errors = "; ".join(f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}" for e in self.import_errors())
        raise TimeoutError(f"DAG {dag_id} did not appear within {timeout:.0f} s. Import errors: {errors or 'none'}")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, *, conf: dict | None = None, logical_date: str | None = None, run_id: str | None = None) -> dict:
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 3.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        return self._request("GET", path)["task_instances"]

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        """Every try of one task instance so far (earlier tries and the current one), each with its state."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/tries"
        return self._request("GET", path)["task_instances"]

    def dag_runs(self, dag_id: str, *, run_type: str | None = None) -> list[dict]:
        query = f"?run_type={urllib.parse.quote(run_type)}&limit=100" if run_type else "?limit=100"
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns{query}")["dag_runs"]

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict]:
        """The asset events a run consumed (an asset-triggered run's reasons)."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/upstreamAssetEvents")["asset_events"]

    def runs_between(self, dag_id: str, first_day: str, last_day: str, *, states: tuple[str, ...] = ()) -> list[dict]:
        """Runs of ``dag_id`` whose logical date falls on ``first_day``..``last_day`` (YYYY-MM-DD), in ``states`` (any when empty)."""
        query = urllib.parse.urlencode(
            [
                *(("state", state) for state in states),
                ("logical_date_gte", f"{first_day}T00:00:00Z"),
                ("logical_date_lte", f"{last_day}T23:59:59.999999Z"),
                ("limit", "100"),
            ]
        )
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]

    def runs_in_flight(self, dag_id: str, first_day: str, last_day: str) -> list[dict]:
        """Queued or running runs of ``dag_id`` whose logical date falls on ``first_day``..``last_day``."""
        return self.runs_between(dag_id, first_day, last_day, states=("queued", "running"))

    def clear_run(self, dag_id: str, run_id: str) -> list[dict]:
        """Clear every task of a run, so that the whole run runs again; the cleared task instances."""
        body = {"dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True, "dry_run": False}
        return self._request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)["task_instances"]

    def clear_failed(self, dag_id: str, run_id: str) -> list[dict]:
        """Clear a run's failed tasks and those after them, so that they run again; the cleared task instances."""
        body = {"dag_run_id": run_id, "only_failed": True, "include_downstream": True, "reset_dag_runs": True, "dry_run": False}
        return self._request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, or ``None`` when it pushed none."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{urllib.parse.quote(key, safe='')}"
        try:
            value = self._request("GET", path)["value"]
        except AirflowApiError as err:
            if err.status == 404:
                return None
            raise
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def backfills(self, dag_id: str) -> list[dict]:
        """Every backfill of ``dag_id``, newest first."""
        answer = self._request("GET", f"/api/v2/backfills?dag_id={urllib.parse.quote(dag_id, safe='')}&limit=100&order_by=-id")
        return answer["backfills"]

    def create_backfill(self, dag_id: str, from_date: str, to_date: str, *, reprocess_behavior: str = "completed", max_active_runs: int = 4) -> dict:
        """``POST /api/v2/backfills``: runs for the logical dates in ``[from_date, to_date]``."""
        body = {
            "dag_id": dag_id,
            "from_date": from_date,
            "to_date": to_date,
            "run_backwards": False,
            "dag_run_conf": {},
            "reprocess_behavior": reprocess_behavior,
            "max_active_runs": max_active_runs,
        }
        return self._request("POST", "/api/v2/backfills", body)


class AirflowApiHook(BaseHook):
    """
    Airflow's own REST API, from an HTTP connection: host (with scheme and port), login, password.

    :param airflow_conn_id: the connection (default ``airflow_api``).
    """

    conn_name_attr = "airflow_conn_id"
    default_conn_name = DEFAULT_AIRFLOW_API_CONN_ID
    conn_type = "http"
    hook_name = "Airflow REST API"

    def __init__(self, airflow_conn_id: str = DEFAULT_AIRFLOW_API_CONN_ID) -> None:
        super().__init__()
        self.airflow_conn_id = airflow_conn_id

    def get_conn(self) -> AirflowClient:
        """A client logged in as the connection's user; a connection without credentials fails the task (no retry)."""
        connection = self.get_connection(self.airflow_conn_id)
        host = connection.host or ""
        if not host.startswith(("http://", "https://")):
            host = f"{connection.schema or 'http'}://{host}"
        if connection.port:
            host = f"{host}:{connection.port}"
        if not connection.login or not connection.password:
            raise AirflowFailException(f"connection {self.airflow_conn_id!r} needs a login and a password for Airflow's REST API")
        return AirflowClient(host, connection.login, connection.password)
