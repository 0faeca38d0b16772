"""NewPartitionTrigger: wait, on the triggerer, until a daily partition newer than a given day lands."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlops_airflow.core.partitions import parse_day


def newest_partition(base_uri: str, conn_id: str | None = None) -> dt.date | None:
    """The newest day ``<base_uri>/dt=YYYY-MM-DD`` that holds a Parquet file; one listing, no data read."""
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(base_uri, conn_id=conn_id)
    if not root.is_dir():
        return None
    days = []
    for folder in root.iterdir():
        if folder.name.startswith("dt=") and folder.is_dir():
            try:
                days.append(parse_day(folder.name.removeprefix("dt=")))
            except ValueError:
                continue
    for day in sorted(days, reverse=True):
        folder = root / f"dt={day.isoformat()}"
        if any(p.name.endswith(".parquet") for p in folder.iterdir()):
            return day
    return None


class NewPartitionTrigger(BaseTrigger):
    """
    Fire when a partition of a day after ``after_day`` holds a Parquet file, or at ``deadline``.

    The triggerer only lists folders (in a thread, so the event loop never blocks); the
    statistics run on a worker when the task resumes. Events: ``{"status": "new_partition",
    "day": "YYYY-MM-DD"}`` with the newest day, or ``{"status": "timeout"}``.

    :param base_uri: the model's data URI.
    :param after_day: fire for partitions after this day (YYYY-MM-DD).
    :param deadline: ISO timestamp (UTC) at which to give up.
    :param poll_interval: seconds between listings.
    :param conn_id: connection for the object store, if it needs one.
    """

    def __init__(self, *, base_uri: str, after_day: str, deadline: str, poll_interval: float = 900.0, conn_id: str | None = None) -> None:
        super().__init__()
        self.base_uri = base_uri
        self.after_day = after_day
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "base_uri": self.base_uri,
                "after_day": self.after_day,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "conn_id": self.conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        after = parse_day(self.after_day)
        deadline = dt.datetime.fromisoformat(self.deadline)
        while True:
            newest = await asyncio.to_thread(newest_partition, self.base_uri, self.conn_id)
            if newest is not None and newest > after:
                yield TriggerEvent({"status": "new_partition", "day": newest.isoformat()})
                return
            remaining = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout"})
                return
            await asyncio.sleep(min(self.poll_interval, remaining))
