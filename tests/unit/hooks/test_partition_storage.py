"""mlops_airflow.hooks.partition_storage over Parquet files in a temporary folder, through file:// URIs.

The data contract check that reads through here, over a corpus of corrupted partitions, is in
tests/unit/operators/test_data_checks.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.hooks.partition_storage import partition_row_count, quarantine_partition, read_partition, safe_name

DAY = dt.date(2026, 4, 9)


def table(ids: list[int], region: str = "north") -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "region": pa.array([region] * len(ids), pa.string())})


@pytest.fixture
def base(tmp_path) -> Path:
    return tmp_path / "events"


def uri(base: Path) -> str:
    return f"file://{base}"


def folder(base: Path, day: dt.date = DAY) -> Path:
    path = base / f"dt={day}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in path.iterdir() if p.is_file()}


class TestReadPartition:
    def test_an_absent_day(self, base):
        folder(base, DAY - dt.timedelta(days=1))
        found = read_partition(uri(base), DAY, None)
        assert (found.day, found.present, found.table, found.error, found.files) == (DAY, False, None, None, ())

    def test_a_folder_of_hidden_and_marker_files_is_absent(self, base):
        """A writer's temporary file (.part-0.parquet.tmp) and a _SUCCESS marker are no data."""
        day = folder(base)
        pq.write_table(table([1]), day / ".part-0.parquet.tmp")
        (day / "_SUCCESS").write_text("")
        found = read_partition(uri(base), DAY, None)
        assert (found.present, found.table, found.files) == (False, None, ())

    def test_files_are_concatenated_in_name_order(self, base):
        day = folder(base)
        pq.write_table(table([3, 4], "south"), day / "part-1.parquet")  # written first, read second
        pq.write_table(table([1, 2]), day / "part-0.parquet")
        (day / "_SUCCESS").write_text("")
        found = read_partition(uri(base), DAY, None)
        assert (found.present, found.error, found.files) == (True, None, ("part-0.parquet", "part-1.parquet"))
        assert found.table.to_pydict() == {"id": [1, 2, 3, 4], "region": ["north", "north", "south", "south"]}

    def test_dictionary_columns_are_read_dictionary_encoded(self, base):
        pq.write_table(table([1, 2]), folder(base) / "part-0.parquet")
        found = read_partition(uri(base), DAY, None, dictionary_columns=["region"])
        assert pa.types.is_dictionary(found.table.schema.field("region").type)
        assert found.table.schema.field("id").type == pa.int64()
        assert found.table.column("region").to_pylist() == ["north", "north"]

    @pytest.mark.parametrize(
        "corrupt",
        [
            pytest.param(lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), id="truncated"),
            pytest.param(lambda path: path.write_text("id,region\n1,north\n"), id="csv"),
            pytest.param(lambda path: path.write_bytes(b""), id="empty-file"),
        ],
    )
    def test_an_unreadable_file_is_a_finding_naming_it(self, base, corrupt):
        day = folder(base)
        pq.write_table(table([1]), day / "part-0.parquet")
        pq.write_table(table([2]), day / "part-1.parquet")
        corrupt(day / "part-1.parquet")
        found = read_partition(uri(base), DAY, None)
        assert (found.present, found.table, found.files) == (True, None, ("part-0.parquet", "part-1.parquet"))
        assert found.error.startswith("part-1.parquet: ")

    def test_files_of_different_schemas_are_a_finding(self, base):
        day = folder(base)
        pq.write_table(table([1]), day / "part-0.parquet")
        pq.write_table(pa.table({"id": pa.array(["2"]), "region": pa.array(["north"])}), day / "part-1.parquet")
        found = read_partition(uri(base), DAY, None)
        assert (found.present, found.table, found.files) == (True, None, ("part-0.parquet", "part-1.parquet"))
        assert found.error.startswith("files have different schemas: ")


class TestPartitionRowCount:
    def test_rows_of_every_file_from_the_footers(self, base):
        day = folder(base)
        pq.write_table(table([1, 2, 3]), day / "part-0.parquet")
        pq.write_table(table([4, 5]), day / "part-1.parquet")
        (day / ".part-2.parquet.tmp").write_text("half-written")  # hidden: not counted, not an error
        (day / "_SUCCESS").write_text("")
        assert partition_row_count(uri(base), DAY, None) == 5

    @pytest.mark.parametrize(
        "prepare",
        [
            pytest.param(lambda day: day.rmdir(), id="absent"),
            pytest.param(lambda day: None, id="empty-folder"),
            pytest.param(lambda day: (day / "part-1.parquet").write_text("not parquet"), id="an-unreadable-file-beside-a-good-one"),
        ],
    )
    def test_zero_when_the_partition_cannot_be_counted(self, base, prepare):
        day = folder(base)
        prepare(day)
        if day.exists() and any(day.iterdir()):
            pq.write_table(table([1, 2, 3]), day / "part-0.parquet")
        assert partition_row_count(uri(base), DAY, None) == 0


class TestQuarantinePartition:
    @pytest.mark.parametrize("suffix", [pytest.param("", id="base"), pytest.param("/", id="base-with-trailing-slash")])
    def test_moves_every_file_and_proves_its_bytes(self, base, suffix):
        day = folder(base)
        pq.write_table(table([1, 2]), day / "part-0.parquet")
        (day / "_SUCCESS").write_text("")
        before = digests(day)
        moved = quarantine_partition(uri(base) + suffix, DAY, "manual__2026-04-10T00:00:00+00:00", None)
        target = base / "_quarantine" / "manual__2026-04-10T00_00_00_00_00" / f"dt={DAY}"
        assert moved == {"day": "2026-04-09", "from": f"file://{day}", "to": f"file://{target}", "sha256": before}
        assert not day.exists()
        assert digests(target) == before
        assert read_partition(uri(base), DAY, None).present is False

    def test_refuses_an_existing_target_and_leaves_both_alone(self, base):
        day = folder(base)
        pq.write_table(table([1, 2]), day / "part-0.parquet")
        target = base / "_quarantine" / "run-1" / f"dt={DAY}"
        target.mkdir(parents=True)
        (target / "part-0.parquet").write_text("an earlier quarantine")
        before, earlier = digests(day), digests(target)
        with pytest.raises(AirflowFailException, match=rf"^quarantine target file://{target} already exists; refusing to overwrite it$"):
            quarantine_partition(uri(base), DAY, "run-1", None)
        assert (digests(day), digests(target)) == (before, earlier)


class TestSafeName:
    @pytest.mark.parametrize(
        ("run_id", "expected"),
        [
            pytest.param("scheduled__2026-04-10", "scheduled__2026-04-10", id="plain"),
            pytest.param("manual__2026-04-10T00:00:00+00:00", "manual__2026-04-10T00_00_00_00_00", id="timestamp"),
            pytest.param("backfill/../../etc", "backfill_.._.._etc", id="slashes"),
            pytest.param("dataset_triggered~é x", "dataset_triggered___x", id="tilde-non-ascii-space"),
        ],
    )
    def test_one_path_segment(self, run_id, expected):
        assert safe_name(run_id) == expected
        assert "/" not in safe_name(run_id)
