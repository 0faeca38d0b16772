"""NewPartitionTrigger: serialises, fires on a newer partition, times out."""

from __future__ import annotations

import asyncio
import datetime as dt

import pyarrow as pa

from mlops_airflow.core.partitions import write_partition
from mlops_airflow.triggers.partitions import NewPartitionTrigger, PartitionLandedTrigger, newest_partition, partition_days


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


class TestPartitionLandedTrigger:
    """The asset watcher's trigger: a baseline first, then one event per listing in which days landed."""

    def test_round_trips_through_serialize(self, tmp_path):
        trigger = PartitionLandedTrigger(base_uri=tmp_path.as_uri(), poll_interval=5.0, conn_id="aws")
        path, kwargs = trigger.serialize()
        assert path == "mlops_airflow.triggers.partitions.PartitionLandedTrigger"
        assert PartitionLandedTrigger(**kwargs).serialize() == (path, kwargs)

    def test_what_is_there_at_start_fires_nothing_then_each_landing_fires_once(self, tmp_path):
        base = tmp_path.as_uri()
        _write(base, dt.date(2026, 3, 1))
        (tmp_path / "dt=2026-03-03").mkdir()  # a folder without its Parquet file yet: not landed

        async def scenario():
            events = []
            stream = PartitionLandedTrigger(base_uri=base, poll_interval=0.05).run()
            first = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.3)  # several listings: the baseline fires nothing
            assert not first.done()
            _write(base, dt.date(2026, 3, 2))
            events.append((await asyncio.wait_for(first, 10)).payload)
            _write(base, dt.date(2026, 3, 3))  # the empty folder gets its file
            _write(base, dt.date(2026, 2, 20))  # and a day lands late, older than the newest
            while sum(len(e["days"]) for e in events) < 3:  # one listing may see one of them, the next the other
                events.append((await asyncio.wait_for(stream.__anext__(), 10)).payload)
            await stream.aclose()
            return events

        first, *later = asyncio.run(scenario())
        assert first == {"status": "partitions_landed", "days": ["2026-03-02"], "newest": "2026-03-02"}
        assert sorted(day for event in later for day in event["days"]) == ["2026-02-20", "2026-03-03"]  # each once
        assert later[-1]["newest"] == "2026-03-03"

    def test_a_day_moved_aside_and_put_back_or_missed_by_one_listing_does_not_fire(self, tmp_path):
        base = tmp_path.as_uri()
        _write(base, dt.date(2026, 3, 1))

        async def scenario():
            stream = PartitionLandedTrigger(base_uri=base, poll_interval=0.05).run()
            pending = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.2)
            (tmp_path / "dt=2026-03-01").rename(tmp_path / "aside")
            await asyncio.sleep(0.2)  # listings without it: an empty store
            (tmp_path / "aside").rename(tmp_path / "dt=2026-03-01")
            await asyncio.sleep(0.2)
            _write(base, dt.date(2026, 3, 2))
            event = await asyncio.wait_for(pending, 10)
            await stream.aclose()
            return event.payload

        assert asyncio.run(scenario())["days"] == ["2026-03-02"]

    def test_a_listing_that_fails_is_retried_at_the_next_interval(self, tmp_path, monkeypatch):
        from mlops_airflow.triggers import partitions

        base = tmp_path.as_uri()
        real = partitions.partition_days
        calls = {"n": 0}

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("the store's client failed: NoCredentialsError")
            return real(*args, **kwargs)

        monkeypatch.setattr(partitions, "partition_days", flaky)

        async def scenario():
            stream = PartitionLandedTrigger(base_uri=base, poll_interval=0.05).run()
            pending = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.2)
            _write(base, dt.date(2026, 3, 2))
            event = await asyncio.wait_for(pending, 10)
            await stream.aclose()
            return event.payload

        assert asyncio.run(scenario())["days"] == ["2026-03-02"]
        assert calls["n"] >= 3

    def test_known_days_are_not_listed_again(self, tmp_path):
        base = tmp_path.as_uri()
        _write(base, dt.date(2026, 3, 1))
        known = partition_days(base)
        assert known == {dt.date(2026, 3, 1)}
        for file in (tmp_path / "dt=2026-03-01").iterdir():
            file.unlink()  # were its folder listed again, the day would be gone
        assert partition_days(base, known=frozenset(known)) == known
        assert partition_days(base) == set()
