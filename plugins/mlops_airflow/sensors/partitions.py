"""PartitionSensor: wait until every daily partition of a window has landed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.core.partitions import days_between, partition_uri
from mlops_airflow.utils.task_args import as_date
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context


class PartitionSensor(FailFastTemplates, BaseSensorOperator):
    """
    Wait for the partitions ``<base_uri>/dt=YYYY-MM-DD`` of ``[start, end)`` to hold Parquet files.

    Reads through Airflow's ``ObjectStoragePath``, so a ``file://`` folder and object storage
    behave the same. Use ``mode="reschedule"`` for long waits so no worker slot is held.

    :param base_uri: the model's data URI.
    :param start: first day of the window (templated).
    :param end: day after the last day of the window (templated); defaults to ``start + 1 day``.
    :param conn_id: connection for the object store, if it needs one.
    """

    template_fields: Sequence[str] = ("base_uri", "start", "end")

    def __init__(self, *, base_uri: str, start: str, end: str | None = None, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_uri = base_uri
        self.start = start
        self.end = end
        self.conn_id = conn_id

    def missing_days(self) -> list[dt.date]:
        start = as_date(self.start, "start")
        end = as_date(self.end, "end") if self.end else start + dt.timedelta(days=1)
        if end <= start:
            raise AirflowFailException(f"end ({end}) must be after start ({start})")
        missing = []
        for day in days_between(start, end):
            folder = ObjectStoragePath(partition_uri(self.base_uri, day), conn_id=self.conn_id)
            if not (folder.is_dir() and any(p.name.endswith(".parquet") for p in folder.iterdir())):
                missing.append(day)
        return missing

    def poke(self, context: Context) -> bool:
        missing = self.missing_days()
        if missing:
            self.log.info("Waiting for %d partitions under %s: %s", len(missing), self.base_uri, ", ".join(map(str, missing[:10])))
            return False
        self.log.info("All partitions of %s..%s are present under %s", self.start, self.end or self.start, self.base_uri)
        return True
