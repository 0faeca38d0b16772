"""PartitionSensor: waits until every day of ``[start, end)`` has a Parquet file under ``<base_uri>/dt=YYYY-MM-DD``."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException
from helpers import task_context

from mlops_airflow.sensors.partitions import PartitionSensor

D = dt.date


def land(root, *days, name: str = "part-0.parquet") -> None:
    for day in days:
        folder = root / f"dt={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def sensor(root, start="2026-03-01", end=None) -> PartitionSensor:
    return PartitionSensor(task_id="wait_for_partitions", base_uri=root.as_uri(), start=start, end=end, mode="reschedule")


class TestPartitionSensor:
    def test_missing_days_of_the_window(self, tmp_path):
        land(tmp_path, D(2026, 3, 1), D(2026, 3, 3))
        assert sensor(tmp_path, "2026-03-01", "2026-03-05").missing_days() == [D(2026, 3, 2), D(2026, 3, 4)]

    def test_the_window_is_one_day_without_an_end(self, tmp_path):
        land(tmp_path, D(2026, 3, 1))
        assert sensor(tmp_path, "2026-03-01").missing_days() == []
        assert sensor(tmp_path, "2026-03-02").missing_days() == [D(2026, 3, 2)]

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param(".part-0.parquet.4f2a.tmp", id="half-written"),
            pytest.param("_SUCCESS", id="marker-only"),
            pytest.param("part-0.csv", id="not-parquet"),
        ],
    )
    def test_a_folder_without_a_parquet_file_has_not_landed(self, tmp_path, name):
        land(tmp_path, D(2026, 3, 1), name=name)
        assert sensor(tmp_path).missing_days() == [D(2026, 3, 1)]

    def test_a_base_uri_that_does_not_exist_yet(self, tmp_path):
        assert sensor(tmp_path / "not-yet").missing_days() == [D(2026, 3, 1)]

    def test_poke(self, tmp_path):
        task = sensor(tmp_path, "2026-03-01", "2026-03-03")
        land(tmp_path, D(2026, 3, 1))
        assert task.poke(task_context()) is False
        land(tmp_path, D(2026, 3, 2))
        assert task.poke(task_context()) is True

    @pytest.mark.parametrize(
        ("start", "end", "match"),
        [
            pytest.param("2026-03-02", "2026-03-02", r"end \(2026-03-02\) must be after start \(2026-03-02\)", id="empty-window"),
            pytest.param("2026-03-02", "2026-03-01", r"end \(2026-03-01\) must be after start \(2026-03-02\)", id="backwards"),
            pytest.param("soon", None, r"start: expected a date \(YYYY-MM-DD\), got 'soon'", id="bad-start"),
            pytest.param("2026-03-01", "later", r"end: expected a date \(YYYY-MM-DD\), got 'later'", id="bad-end"),
        ],
    )
    def test_a_bad_window_fails_without_retry(self, tmp_path, start, end, match):
        with pytest.raises(AirflowFailException, match=match):
            sensor(tmp_path, start, end).poke(task_context())

    def test_templates(self, tmp_path):
        with DAG("templates", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
            task = PartitionSensor(task_id="wait_for_partitions", base_uri="{{ params.root }}/events", start="{{ params.day }}", end="{{ params.end }}")
        task.render_template_fields({"params": {"root": "s3://bucket", "day": "2026-03-01", "end": "2026-03-03"}})
        assert (task.base_uri, task.start, task.end) == ("s3://bucket/events", "2026-03-01", "2026-03-03")
