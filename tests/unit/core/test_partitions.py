from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from mlops_airflow.core.partitions import days_between, list_partition_files, partition_uri, read_window, write_partition

DAY = dt.date(2026, 2, 1)


def table(values) -> pa.Table:
    return pa.table({"x": values})


def test_days_between_is_half_open():
    assert days_between(DAY, DAY + dt.timedelta(days=3)) == [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    assert days_between(DAY, DAY) == []


def test_partition_uri():
    assert partition_uri("s3://b/m/", DAY) == "s3://b/m/dt=2026-02-01"


class TestWritePartition:
    def test_atomic_and_idempotent(self, tmp_path):
        base = f"file://{tmp_path}"
        uri = write_partition(table([1, 2]), base, DAY)
        assert uri == f"{base}/dt=2026-02-01/part-0.parquet"
        write_partition(table([3]), base, DAY)
        assert list_partition_files(base, DAY) == [str(tmp_path / "dt=2026-02-01" / "part-0.parquet")]
        # No temporary file is left behind, and the second write replaced the first whole.
        assert [p.name for p in (tmp_path / "dt=2026-02-01").iterdir()] == ["part-0.parquet"]
        assert read_window(base, DAY, DAY + dt.timedelta(days=1)).frame["x"].tolist() == [3]

    def test_failed_write_leaves_nothing(self, tmp_path, monkeypatch):
        import pyarrow.parquet as pq

        def broken(*args, **kwargs):
            path = args[1]
            with open(path, "wb") as handle:
                handle.write(b"half")
            raise OSError("disk full")

        monkeypatch.setattr(pq, "write_table", broken)
        with pytest.raises(OSError, match="disk full"):
            write_partition(table([1]), f"file://{tmp_path}", DAY)
        assert list((tmp_path / "dt=2026-02-01").iterdir()) == []


class TestReadWindow:
    def test_present_and_missing_days(self, tmp_path):
        base = f"file://{tmp_path}"
        write_partition(table([1, 2]), base, DAY)
        write_partition(table([5]), base, DAY + dt.timedelta(days=2))
        window = read_window(base, DAY, DAY + dt.timedelta(days=3))
        assert window.present_days == (DAY, DAY + dt.timedelta(days=2))
        assert window.missing_days == (DAY + dt.timedelta(days=1),)
        assert window.frame["x"].tolist() == [1, 2, 5]
        assert window.frame["dt"].tolist() == [DAY, DAY, DAY + dt.timedelta(days=2)]

    def test_empty_window(self, tmp_path):
        window = read_window(f"file://{tmp_path}", DAY, DAY + dt.timedelta(days=2), columns=["x"])
        assert window.frame.empty
        assert window.present_days == ()
        assert len(window.missing_days) == 2
