"""row_hashes and duplicate_row_mask: equal rows hash equal, and only rows equal in every column are duplicates."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest

from mlops_airflow.core import row_hashes as row_hashes_module
from mlops_airflow.core.row_hashes import duplicate_row_mask, row_hashes


def dictionary_chunks(*chunks: tuple[list[str], list[int]]) -> pa.Table:
    """A one-column table whose chunks each carry their own dictionary (as separate Parquet files read back do)."""
    batches = [pa.record_batch({"s": pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(words))}) for words, indices in chunks]
    return pa.Table.from_batches(batches)


class TestDuplicateRowMask:
    def test_exact_duplicate_rows(self):
        table = pa.table({"a": [1.0, 2.0, 1.0, None, None, float("nan"), float("nan"), 3.0], "b": ["x", "y", "x", None, None, "n", "n", "x"]})
        assert duplicate_row_mask(table).tolist() == [False, False, True, False, True, False, True, False]

    def test_hash_collisions_are_not_duplicates(self):
        table = pa.table({"a": np.arange(1000), "b": [str(i % 7) for i in range(1000)]})
        with mock.patch.object(row_hashes_module, "row_hashes", return_value=np.zeros(1000, dtype=np.uint64)):
            assert not duplicate_row_mask(table).any()

    @pytest.mark.parametrize(
        ("table", "expected"),
        [
            pytest.param(pa.table({"a": [7, 7, 7]}), [False, True, True], id="every-repeat-after-the-first"),
            pytest.param(pa.table({"a": [1, 2, 1], "b": ["x", "x", "y"]}), [False, False, False], id="equal-in-one-column-only"),
            pytest.param(pa.table({"a": pa.array([None, -(2**62)], pa.int64())}), [False, False], id="null-int-is-not-the-null-code"),
            pytest.param(pa.table({"a": [None, float("nan")]}), [False, False], id="null-float-is-not-nan"),
            pytest.param(pa.table({"a": [True, False, True, None, None]}), [False, False, True, False, True], id="booleans"),
            pytest.param(
                pa.table({"t": pa.array([dt.datetime(2026, 2, 1), dt.datetime(2026, 2, 2), dt.datetime(2026, 2, 1)], pa.timestamp("ns", tz="UTC"))}),
                [False, False, True],
                id="timestamps",
            ),
            pytest.param(dictionary_chunks((["p", "q"], [0, 1]), (["q", "p"], [0, 1])), [False, False, True, True], id="dictionaries-differ-per-chunk"),
            pytest.param(pa.table({"a": pa.array([], pa.int64())}), [], id="empty"),
        ],
    )
    def test_rows_equal_in_full(self, table, expected):
        assert duplicate_row_mask(table).tolist() == expected


class TestRowHashes:
    def test_hash_separates_columns(self):
        table = pa.table({"a": [1, 2], "b": [2, 1]})
        hashes = row_hashes(table)
        assert hashes[0] != hashes[1]

    def test_strings_hash_by_value_across_chunks(self):
        table = pa.Table.from_batches(
            [pa.record_batch({"s": ["p", "q"]}), pa.record_batch({"s": ["q", "p"]})],
        )
        hashes = row_hashes(table)
        assert hashes[0] == hashes[3]
        assert hashes[1] == hashes[2]

    def test_a_dictionary_column_hashes_as_its_values(self):
        encoded = dictionary_chunks((["p", "q"], [0, 1]), (["q", "p"], [0, 1]))
        plain = pa.table({"s": ["p", "q", "q", "p"]})
        assert row_hashes(encoded).tolist() == row_hashes(plain).tolist()

    @pytest.mark.parametrize(
        "values",
        [
            pytest.param([0, 1, 2, 3], id="int"),
            pytest.param([0.0, 0.5, 1.0, 2.0], id="float"),
            pytest.param(["", "a", "b", "ab"], id="string"),
        ],
    )
    def test_one_hash_per_row_and_distinct_rows_hash_apart(self, values):
        hashes = row_hashes(pa.table({"a": values}))
        assert hashes.dtype == np.uint64
        assert len(set(hashes.tolist())) == len(values)
