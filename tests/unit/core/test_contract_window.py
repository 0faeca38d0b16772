"""The contract's window: violations counted per partition, dtypes matched, a rule's mask turned into its result."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from mlops_airflow.core.contract_results import RuleResult
from mlops_airflow.core.contract_window import Window, dtype_matches, normalised_type, passed_rule, rule_from_mask, shown_value, to_numpy_mask, where

DAYS = [dt.date(2026, 2, 1), dt.date(2026, 2, 2), dt.date(2026, 2, 3)]


def window(sizes: tuple[int, ...] = (2, 3, 1)) -> Window:
    """A window of ``len(sizes)`` partitions, ``sizes[i]`` rows in partition i, one int column ``x``."""
    counts = np.array(sizes, dtype=np.int64)
    part = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    return Window(table=pa.table({"x": np.arange(int(counts.sum()))}), part=part, days=DAYS[: len(counts)], sizes=counts)


def mask(*rows: int, total: int = 6) -> np.ndarray:
    flags = np.zeros(total, dtype=bool)
    flags[list(rows)] = True
    return flags


class TestWindow:
    @pytest.mark.parametrize(
        ("rows", "counts", "names"),
        [
            pytest.param((), [0, 0, 0], (), id="none"),
            pytest.param((0, 1), [2, 0, 0], ("2026-02-01",), id="first-partition"),
            pytest.param((1, 3, 4, 5), [1, 2, 1], ("2026-02-01", "2026-02-02", "2026-02-03"), id="every-partition"),
            pytest.param((5,), [0, 0, 1], ("2026-02-03",), id="last-partition"),
        ],
    )
    def test_per_partition_and_names(self, rows, counts, names):
        checked = window()
        per_partition = checked.per_partition(mask(*rows))
        assert per_partition.tolist() == counts
        assert checked.names(per_partition) == names

    def test_a_partition_with_no_rows_still_has_its_count(self):
        assert window((2, 0, 4)).per_partition(mask(0, 5)).tolist() == [1, 0, 1]


class TestDtypeMatches:
    @pytest.mark.parametrize(
        ("arrow_type", "dtype", "matches"),
        [
            pytest.param(pa.int32(), "int", True, id="int32-int"),
            pytest.param(pa.uint8(), "int", True, id="uint8-int"),
            pytest.param(pa.float64(), "int", False, id="float-is-not-int"),
            pytest.param(pa.int64(), "float", True, id="int-is-a-float"),
            pytest.param(pa.float32(), "float", True, id="float32-float"),
            pytest.param(pa.string(), "float", False, id="string-is-not-float"),
            pytest.param(pa.string(), "string", True, id="string"),
            pytest.param(pa.large_string(), "string", True, id="large-string"),
            pytest.param(pa.string_view(), "string", True, id="string-view"),
            pytest.param(pa.binary(), "string", False, id="binary-is-not-string"),
            pytest.param(pa.dictionary(pa.int32(), pa.string()), "string", True, id="categorical-string"),
            pytest.param(pa.dictionary(pa.int32(), pa.int64()), "string", False, id="categorical-int-is-not-string"),
            pytest.param(pa.bool_(), "bool", True, id="bool"),
            pytest.param(pa.int8(), "bool", False, id="int-is-not-bool"),
            pytest.param(pa.timestamp("us"), "timestamp", True, id="naive-timestamp"),
            pytest.param(pa.timestamp("ns", tz="UTC"), "timestamp", True, id="utc-timestamp"),
            pytest.param(pa.date32(), "timestamp", False, id="date-is-not-timestamp"),
        ],
    )
    def test_dtype_matches(self, arrow_type, dtype, matches):
        assert dtype_matches(arrow_type, dtype) is matches

    @pytest.mark.parametrize(
        ("dtype", "arrow_type"),
        [
            pytest.param("int", pa.int64(), id="int"),
            pytest.param("float", pa.float64(), id="float"),
            pytest.param("string", pa.large_string(), id="string"),
            pytest.param("bool", pa.bool_(), id="bool"),
            pytest.param("timestamp", pa.timestamp("ns", tz="UTC"), id="timestamp"),
        ],
    )
    def test_normalised_type_is_the_widest_and_matches_its_dtype(self, dtype, arrow_type):
        assert normalised_type(dtype) == arrow_type
        assert dtype_matches(normalised_type(dtype), dtype)


class TestToNumpyMask:
    @pytest.mark.parametrize(
        ("array", "expected"),
        [
            pytest.param(pa.array([True, False, None]), [True, False, False], id="null-is-false"),
            pytest.param(pa.chunked_array([[True], [None, True]]), [True, False, True], id="chunked"),
            pytest.param(pa.array([], pa.bool_()), [], id="empty"),
        ],
    )
    def test_to_numpy_mask(self, array, expected):
        flags = to_numpy_mask(array)
        assert flags.dtype == np.bool_
        assert flags.tolist() == expected


class TestShownValue:
    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            pytest.param(pa.scalar(3), 3, id="arrow-int"),
            pytest.param(np.float64(0.5), 0.5, id="numpy-float"),
            pytest.param(pa.scalar(dt.datetime(2026, 2, 1, 12, tzinfo=dt.UTC)), "2026-02-01T12:00:00+00:00", id="arrow-timestamp"),
            pytest.param(dt.date(2026, 2, 1), "2026-02-01", id="date"),
            pytest.param(b"ok\xff", "ok\\xff", id="invalid-utf8-bytes"),
            pytest.param("plain", "plain", id="text"),
            pytest.param(None, None, id="none"),
        ],
    )
    def test_shown_value_is_json_ready(self, value, shown):
        assert shown_value(value) == shown


class TestWhere:
    @pytest.mark.parametrize(
        ("names", "text"),
        [
            pytest.param((), "", id="nowhere"),
            pytest.param(("2026-02-01",), " in dt=2026-02-01", id="one"),
            pytest.param(("2026-02-01", "2026-02-02"), " in dt=2026-02-01, dt=2026-02-02", id="two"),
            pytest.param(tuple(f"2026-02-0{i}" for i in range(1, 6)), " in " + ", ".join(f"dt=2026-02-0{i}" for i in range(1, 6)), id="five"),
            pytest.param(
                tuple(f"2026-02-0{i}" for i in range(1, 7)), " in " + ", ".join(f"dt=2026-02-0{i}" for i in range(1, 6)) + " and more", id="six-shows-five"
            ),
        ],
    )
    def test_where(self, names, text):
        assert where(names) == text


class TestRuleFromMask:
    def test_a_mask_with_violations_fails_and_names_its_partitions(self):
        rules: list[RuleResult] = []
        rule_from_mask(window(), "column.range", "x", mask(0, 4), "outside [1, 3]", {"min": 0, "max": 5}, [1, 3], rules)
        assert rules == [
            RuleResult(
                "column.range",
                False,
                "column.range: column 'x': 2 of 6 rows outside [1, 3] in dt=2026-02-01, dt=2026-02-02",
                column="x",
                observed={"min": 0, "max": 5},
                expected=[1, 3],
                failing_rows=2,
                partitions=("2026-02-01", "2026-02-02"),
            )
        ]

    def test_an_empty_mask_passes(self):
        rules: list[RuleResult] = []
        rule_from_mask(window(), "column.finite", "x", mask(), "are NaN or +-inf", 0, 0, rules)
        assert rules == [RuleResult("column.finite", True, "column.finite: column 'x': ok", column="x", observed=0, expected=0)]

    def test_passed_rule(self):
        assert passed_rule("column.unique", "x", "unique") == RuleResult("column.unique", True, "column.unique: column 'x': ok", column="x", expected="unique")
