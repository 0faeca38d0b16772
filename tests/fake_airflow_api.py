"""A stand-in for Airflow's REST API v2 as our tasks use it: a token, backfills, human-in-the-loop records.

The real API is exercised by the end-to-end tests; this one answers in milliseconds and
misbehaves on request, the ways Airflow does:

- ``busy``: answer this many backfill creations with 503 "Database is locked..." and
  create nothing (Airflow on SQLite under concurrent writes);
- ``broken_after_create``: create this many backfills and then answer 500 "Database error"
  (Airflow on SQLite: the backfill was committed, the answer was lost);
- ``refuse``: answer every creation with 409 (another backfill of the DAG is running);
- ``reject_tokens``: answer every request that needs a token with 401, fresh tokens too
  (a token signed with another key, or a user whose rights were taken away);
- ``delay``: seconds before a request is acted on;
- ``answer_delay``: seconds between acting on a request and answering it (a client killed
  then has had its backfill created but never heard so).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from fake_http import FakeServer, JsonHandler

XCOM_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/(?P<run_id>[^/]+)/taskInstances/(?P<task_id>[^/]+)/xcomEntries/(?P<key>[^/]+)")
DAG_RUNS_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns")
CLEAR_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/clearTaskInstances")
HITL_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/(?P<run_id>[^/]+)/taskInstances/(?P<task_id>[^/]+)/-1/hitlDetails")
LOCKED = "Database is locked. Backfill creation is not supported on SQLite under concurrent access."


class _ApiHandler(JsonHandler):
    api: FakeAirflowApi

    def reply(self, status: int, body: Any = None, content_type: str = "application/json") -> None:
        time.sleep(self.api.answer_delay)  # the stand-in's latency, not a wait for an event
        super().reply(status, body, content_type)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.api.token}" and not self.api.reject_tokens:
            return True
        self.reply(401, {"detail": "Not authenticated"})
        return False

    def _record(self) -> Any:
        body = self.body()
        with self.api.lock:
            self.api.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
        time.sleep(self.api.delay)  # the stand-in's latency, not a wait for an event
        return body

    def do_POST(self) -> None:
        api, body = self.api, self._record()
        if self.path == "/auth/token":
            if (body or {}).get("username") != api.login or (body or {}).get("password") != api.password:
                return self.reply(401, {"detail": "Invalid credentials"})
            return self.reply(201, {"access_token": api.token})
        if not self._authorised():
            return None
        clear = CLEAR_PATH.fullmatch(self.path)
        if clear:
            with api.lock:
                for run in api.dag_runs:
                    if run["dag_id"] == unquote(clear["dag_id"]) and run["dag_run_id"] == body["dag_run_id"]:
                        run.update(state="queued", end_date=None)
                api.cleared.append((unquote(clear["dag_id"]), body["dag_run_id"]))
            return self.reply(200, {"task_instances": [], "total_entries": 0})
        trigger = DAG_RUNS_PATH.fullmatch(self.path)
        if trigger:
            with api.lock:
                if any(r["dag_run_id"] == body["dag_run_id"] for r in api.dag_runs):
                    return self.reply(409, {"detail": f"DAG run {body['dag_run_id']} exists"})
                run = {
                    "dag_id": unquote(trigger["dag_id"]),
                    "dag_run_id": body["dag_run_id"],
                    "logical_date": body["logical_date"],
                    "state": "queued",
                    "end_date": None,
                }
                api.dag_runs.append(run)
            return self.reply(200, run)
        if self.path != "/api/v2/backfills":
            return self.reply(404, {"detail": "Not Found"})
        with api.lock:
            if api.busy:
                api.busy -= 1
                return self.reply(503, {"detail": LOCKED})
            if api.refuse:
                return self.reply(409, {"detail": f"There is already a running backfill for dag {body['dag_id']}"})
            backfill = {
                "id": len(api.backfills) + 1,
                "dag_id": body["dag_id"],
                "from_date": f"{body['from_date']}T00:00:00Z",
                "to_date": f"{body['to_date']}T00:00:00Z",
                "reprocess_behavior": body.get("reprocess_behavior"),
                "max_active_runs": body.get("max_active_runs"),
                "created_at": api.now(),
            }
            api.backfills.append(backfill)  # committed before the answer: a lost answer leaves it behind
            api.take_over(body["dag_id"], body["from_date"], body["to_date"], backfill["id"])
            if api.broken_after_create:
                api.broken_after_create -= 1
                return self.reply(500, {"detail": "Database error"})
        return self.reply(200, backfill)

    def do_GET(self) -> None:
        api = self.api
        self._record()
        with api.lock:  # one misbehaviour a request: the stalls first, then the gateway's errors
            stalled, api.stalls = api.stalls > 0, max(api.stalls - 1, 0)
            status = None
            if not stalled and api.gateway_errors:
                status, api.gateway_errors = api.gateway_errors[0], api.gateway_errors[1:]
        if stalled:
            time.sleep(api.stall_seconds)  # a busy server: it answers after the client stopped waiting
            return self.reply(200, {"backfills": [], "total_entries": 0})
        if status:
            return self.reply(status, {"detail": "Bad Gateway"})
        if not self._authorised():
            return None
        url = urlparse(self.path)
        xcom = XCOM_PATH.fullmatch(url.path)
        if xcom and xcom["key"] == "return_value":
            with api.lock:
                value = api.xcoms.get((unquote(xcom["dag_id"]), unquote(xcom["run_id"]), xcom["task_id"]))
            return self.reply(200, {"key": "return_value", "value": value}) if value is not None else self.reply(404, {"detail": "XCom entry not found"})
        hitl = HITL_PATH.fullmatch(url.path)
        if hitl:
            with api.lock:
                detail = api.hitl.get((unquote(hitl["dag_id"]), unquote(hitl["run_id"]), hitl["task_id"]))
            return self.reply(200, detail) if detail is not None else self.reply(404, {"detail": "No HITL detail"})
        runs = DAG_RUNS_PATH.fullmatch(url.path)
        if runs:
            query = parse_qs(url.query)
            states, low, high = set(query.get("state", [])), query["logical_date_gte"][0], query["logical_date_lte"][0]
            with api.lock:
                found = [
                    dict(r)
                    for r in api.dag_runs
                    if r["dag_id"] == unquote(runs["dag_id"]) and (not states or r["state"] in states) and low <= r["logical_date"] <= high
                ]
            return self.reply(200, {"dag_runs": found, "total_entries": len(found)})
        if url.path != "/api/v2/backfills":
            return self.reply(404, {"detail": "Not Found"})
        dag_id = parse_qs(url.query).get("dag_id", [None])[0]
        with api.lock:
            found = [b for b in reversed(api.backfills) if dag_id is None or b["dag_id"] == dag_id]  # newest first
        return self.reply(200, {"backfills": found, "total_entries": len(found)})


class FakeAirflowApi(FakeServer):
    """Airflow's token endpoint and backfills, on a free loopback port; every request is kept in ``requests``.

    :param login: the user ``POST /auth/token`` accepts.
    :param password: that user's password.
    :param delay: seconds before a request is acted on.
    :param answer_delay: seconds after a request was acted on, before its answer.
    """

    def __init__(self, *, login: str = "pipeline", password: str = "s3cret", delay: float = 0.0, answer_delay: float = 0.0) -> None:
        self.login, self.password, self.delay, self.answer_delay = login, password, delay, answer_delay
        self.token = f"token-{uuid.uuid4().hex}"
        self.backfills: list[dict[str, Any]] = []
        # DAG runs as ``GET /dags/{dag_id}/dagRuns`` lists them: dag_id, dag_run_id, logical_date (ISO, Z), state
        self.dag_runs: list[dict[str, Any]] = []
        self.cleared: list[tuple[str, str]] = []  # (dag_id, dag_run_id) of every clearTaskInstances
        self.left_out: set[str] = set()  # days (YYYY-MM-DD) a backfill creation leaves alone
        # (dag_id, run_id, task_id) -> the human-in-the-loop record GET .../hitlDetails answers
        self.hitl: dict[tuple[str, str, str], dict[str, Any]] = {}
        # (dag_id, run_id, task_id) -> the return value GET .../xcomEntries/return_value answers
        self.xcoms: dict[tuple[str, str, str], Any] = {}
        self.reject_tokens = False
        self.requests: list[dict[str, Any]] = []
        self.busy = 0
        self.broken_after_create = 0
        self.refuse = False
        self.stalls, self.stall_seconds = 0, 1.0  # the next GETs that answer only after stall_seconds
        self.gateway_errors: list[int] = []  # statuses (502, 503, 504) the next GETs answer
        self.lock = threading.Lock()
        super().__init__(_ApiHandler, api=self)

    def take_over(self, dag_id: str, from_date: str, to_date: str, backfill_id: int) -> None:
        """What Airflow's backfill does to each day (reprocess "completed"): queue the day's finished run again, or create one.

        Days in ``left_out`` are not touched (a backfill committed half-way on SQLite).
        """
        import datetime as dt

        day, last = dt.date.fromisoformat(from_date[:10]), dt.date.fromisoformat(to_date[:10])
        while day <= last:
            if day.isoformat() not in self.left_out:
                found = [r for r in self.dag_runs if r["dag_id"] == dag_id and r["logical_date"].startswith(day.isoformat())]
                for run in found:
                    if run["state"] in ("success", "failed"):
                        run.update(state="queued", end_date=None)
                if not found:
                    run_id = f"backfill__{day}__{backfill_id}"
                    self.dag_runs.append({"dag_id": dag_id, "dag_run_id": run_id, "logical_date": f"{day}T00:00:00Z", "state": "queued", "end_date": None})
            day += dt.timedelta(days=1)

    @staticmethod
    def now() -> str:
        """A timestamp as Airflow's API writes one."""
        import datetime as dt

        return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")

    def creations(self) -> int:
        """How many times a backfill creation was asked for, whatever the answer."""
        return sum(1 for r in self.requests if r["method"] == "POST" and r["path"] == "/api/v2/backfills")

    def connection(self, **overrides: Any) -> str:
        """This API as an Airflow connection, the JSON for an ``AIRFLOW_CONN_<ID>`` variable; ``overrides`` replace fields."""
        return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": self.port, "login": self.login, "password": self.password, **overrides})
