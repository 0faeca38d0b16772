"""NewPartitionTrigger: serialises, fires on a newer partition, times out."""

from __future__ import annotations

import asyncio
import datetime as dt

import pyarrow as pa

from mlops_airflow.core.partitions import write_partition
from mlops_airflow.triggers.partitions import NewPartitionTrigger, newest_partition


def _write(base_uri: str, day: dt.date) -> None:
    write_partition(pa.table({"x": [1]}), base_uri, day)


def _first_event(trigger: NewPartitionTrigger):
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first(), timeout=20))


def _deadline(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def test_round_trips_through_serialize(tmp_path):
    trigger = NewPartitionTrigger(base_uri=tmp_path.as_uri(), after_day="2026-03-01", deadline=_deadline(60), poll_interval=5.0, conn_id="aws")
    path, kwargs = trigger.serialize()
    assert path == "mlops_airflow.triggers.partitions.NewPartitionTrigger"
    again = NewPartitionTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_fires_with_the_newest_day_after_the_given_one(tmp_path):
    base = tmp_path.as_uri()
    _write(base, dt.date(2026, 3, 1))
    (tmp_path / "dt=2026-03-04").mkdir()  # a folder without files has not landed
    _write(base, dt.date(2026, 3, 3))
    assert newest_partition(base) == dt.date(2026, 3, 3)
    event = _first_event(NewPartitionTrigger(base_uri=base, after_day="2026-03-01", deadline=_deadline(30), poll_interval=0.05))
    assert event == {"status": "new_partition", "day": "2026-03-03"}


def test_waits_for_a_partition_that_lands_later(tmp_path):
    base = tmp_path.as_uri()
    _write(base, dt.date(2026, 3, 1))

    async def land_then_wait():
        trigger = NewPartitionTrigger(base_uri=base, after_day="2026-03-01", deadline=_deadline(30), poll_interval=0.05)

        async def first():
            async for event in trigger.run():
                return event.payload

        waiting = asyncio.ensure_future(first())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await asyncio.to_thread(_write, base, dt.date(2026, 3, 2))
        return await asyncio.wait_for(waiting, timeout=10)

    assert asyncio.run(land_then_wait()) == {"status": "new_partition", "day": "2026-03-02"}


def test_times_out_without_a_new_partition(tmp_path):
    base = tmp_path.as_uri()
    _write(base, dt.date(2026, 3, 1))
    event = _first_event(NewPartitionTrigger(base_uri=base, after_day="2026-03-01", deadline=_deadline(0.3), poll_interval=0.05))
    assert event == {"status": "timeout"}
    assert newest_partition((tmp_path / "missing").as_uri()) is None
