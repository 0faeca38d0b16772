"""Partition triggers: NewPartitionTrigger (a deferred task waits for a newer day) and PartitionLandedTrigger (an asset watcher)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

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


def partition_days(base_uri: str, conn_id: str | None = None, *, known: frozenset[dt.date] = frozenset()) -> set[dt.date]:
    """The days under ``base_uri`` whose ``dt=YYYY-MM-DD`` folder holds a Parquet file.

    Days in ``known`` are taken as still there if their folder is, without listing it again: one
    listing of the root, plus one per folder not known yet.
    """
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(base_uri, conn_id=conn_id)
    invalidate = getattr(root.fs, "invalidate_cache", None)
    if invalidate is not None:  # object stores cache listings for the life of the process: the triggerer's is long
        invalidate(root.path)
    if not root.is_dir():
        return set()
    days = set()
    for folder in root.iterdir():
        if not (folder.name.startswith("dt=") and folder.is_dir()):
            continue
        try:
            day = parse_day(folder.name.removeprefix("dt="))
        except ValueError:
            continue
        if day in known or any(p.name.endswith(".parquet") for p in folder.iterdir()):
            days.add(day)
    return days


class PartitionLandedTrigger(BaseEventTrigger):
    """
    An asset watcher's trigger: an event each time a day's partition lands under ``base_uri``.

    A day has landed when its ``dt=YYYY-MM-DD`` folder holds a Parquet file (written complete:
    see :func:`mlops_airflow.core.partitions.write_partition`). The first listing after the
    triggerer starts this trigger is the baseline and fires nothing; partitions that land while
    no triggerer runs are left to the DAG's schedule. A day that lands late (older than the
    newest) fires too; a day fires once, so one moved aside and put back does not fire again. Event: ``{"status": "partitions_landed", "days": [...], "newest": ...}``.

    :param base_uri: the data URI whose partitions are watched.
    :param poll_interval: seconds between listings.
    :param conn_id: connection for the object store, if it needs one.
    """

    def __init__(self, *, base_uri: str, poll_interval: float = 5.0, conn_id: str | None = None) -> None:
        super().__init__()
        self.base_uri = base_uri
        self.poll_interval = poll_interval
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"base_uri": self.base_uri, "poll_interval": self.poll_interval, "conn_id": self.conn_id},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        seen: frozenset[dt.date] | None = None
        while True:
            try:
                days = frozenset(await asyncio.to_thread(partition_days, self.base_uri, self.conn_id, known=seen or frozenset()))
            except Exception as err:  # the store's client failed (unreachable, credentials): a dead watcher would lose every landing
                self.log.warning("Listing %s failed, trying again in %.0f s: %s", self.base_uri, self.poll_interval, err)
            else:
                landed = sorted(days - seen) if seen is not None else []
                if landed:
                    self.log.info("Partitions landed under %s: %s", self.base_uri, ", ".join(d.isoformat() for d in landed))
                    yield TriggerEvent({"status": "partitions_landed", "days": [d.isoformat() for d in landed], "newest": max(days).isoformat()})
                # Days once seen stay seen: a listing that briefly misses them (or a day moved aside and put back) is no landing.
                seen = days if seen is None else seen | days
            await asyncio.sleep(self.poll_interval)


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
