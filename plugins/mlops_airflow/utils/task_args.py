"""Values from task arguments (dates, the model spec): a bad value fails the task without retries."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.core.partitions import parse_day
from mlops_airflow.specs import ModelSpec, ModelSpecError, load_spec


def load_task_spec(path: str) -> ModelSpec:
    """The model spec a task was given; an invalid spec fails the task (a retry reads the same file)."""
    try:
        return load_spec(path)
    except ModelSpecError as err:
        raise AirflowFailException(str(err)) from err


def as_date(value: Any, name: str) -> dt.date:
    """A date from a date, a datetime or an ISO string."""
    try:
        return parse_day(value)
    except ValueError as err:
        raise AirflowFailException(f"{name}: {err}") from None


def as_utc_datetime(value: Any, name: str) -> dt.datetime:
    """A UTC datetime from a date, a datetime or an ISO string; a bare date means its midnight.

    A value without an offset is read as UTC; one with another offset is converted to UTC.
    """
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    text = str(value).strip()
    try:
        moment = dt.datetime.fromisoformat(text) if len(text) > 10 else dt.datetime.combine(parse_day(text), dt.time())
    except ValueError:
        raise AirflowFailException(f"{name} must be a date or an ISO timestamp, got {value!r}") from None
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def as_bool(value: Any) -> bool:
    """A flag from a bool or a rendered template ("True", "false", "1", "")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


_Payload = TypeVar("_Payload")


def read_payload(payload_type: type[_Payload], value: Any, where: str) -> _Payload:
    """``payload_type.from_xcom(value)``; a value of another shape fails the task (no retry) naming ``where`` and the problem."""
    from mlops_airflow.core.payloads import PayloadError

    try:
        return payload_type.from_xcom(value)  # type: ignore[attr-defined]
    except PayloadError as err:
        raise AirflowFailException(f"{where} is not what this task reads: {err}") from None
