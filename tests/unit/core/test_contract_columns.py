"""The column and timestamp rules on their own, over small windows built by hand (two partitions of two rows)."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pyarrow as pa
import pytest

from mlops_airflow.core.contract_columns import check_columns, check_timestamps
from mlops_airflow.core.contract_results import RuleResult
from mlops_airflow.core.contract_window import Window
from mlops_airflow.specs import ColumnContract, DataContract, RowCountContract

DAYS = [dt.date(2026, 2, 1), dt.date(2026, 2, 2)]
FIRST, SECOND = (d.isoformat() for d in DAYS)
NAN, INF = float("nan"), float("inf")


def window(columns: dict[str, pa.Array | list], sizes: tuple[int, ...] = (2, 2)) -> Window:
    counts = np.array(sizes, dtype=np.int64)
    part = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    return Window(table=pa.table(columns), part=part, days=DAYS[: len(counts)], sizes=counts)


def only(rules: list[RuleResult], name: str) -> RuleResult:
    (rule,) = [r for r in rules if r.rule == name]
    return rule


def invalid_utf8() -> pa.Array:
    return pa.array([b"ok", b"\xff\xfe", b"fine", b"x"], pa.binary()).view(pa.string())


class TestCheckColumns:
    @pytest.mark.parametrize(
        ("column", "values", "rule", "outcome"),
        [
            pytest.param(ColumnContract("a", "int", max_null_fraction=0.5), [1, None, 3, 4], "column.nulls", (True, 0, ()), id="nulls-within-bound"),
            pytest.param(
                ColumnContract("a", "int", max_null_fraction=0.4), [1, None, 3, 4], "column.nulls", (False, 1, (FIRST,)), id="nulls-judged-per-partition"
            ),
            pytest.param(ColumnContract("a", "int"), [1, 2, None, 4], "column.nulls", (False, 1, (SECOND,)), id="not-nullable"),
            pytest.param(ColumnContract("a", "float"), [1.0, 2.0, INF, NAN], "column.finite", (False, 2, (SECOND,)), id="nan-and-inf"),
            pytest.param(ColumnContract("a", "float"), [1.0, 2.0, 3.0, 4.0], "column.finite", (True, 0, ()), id="finite"),
            pytest.param(ColumnContract("a", "int", minimum=1, maximum=10), [1, 2, 3, 40], "column.range", (False, 1, (SECOND,)), id="above-maximum"),
            pytest.param(ColumnContract("a", "int", minimum=0), [-1, 2, 3, 4], "column.range", (False, 1, (FIRST,)), id="below-minimum-only-bound"),
            pytest.param(ColumnContract("a", "int", minimum=1, maximum=10), [1, 2, 3, 10], "column.range", (True, 0, ()), id="bounds-inclusive"),
            pytest.param(
                ColumnContract("a", "float", minimum=0, maximum=10, allow_non_finite=True),
                [1.0, NAN, 3.0, 4.0],
                "column.range",
                (True, 0, ()),
                id="nan-is-not-out-of-range",
            ),
            pytest.param(
                ColumnContract("a", "string", allowed=("x", "y"), max_null_fraction=1.0),
                ["x", "y", "z", None],
                "column.allowed_values",
                (False, 1, (SECOND,)),
                id="a-value-outside-the-set",
            ),
            pytest.param(
                ColumnContract("a", "string", allowed=("x", "y"), max_null_fraction=1.0),
                ["x", None, "y", "x"],
                "column.allowed_values",
                (True, 0, ()),
                id="null-is-not-a-value",
            ),
            pytest.param(ColumnContract("a", "int", unique=True), [2, 2, 1, 3], "column.unique", (False, 2, (FIRST,)), id="repeat-in-one-partition"),
            pytest.param(ColumnContract("a", "int", unique=True), [1, 2, 3, 1], "column.unique", (False, 2, (FIRST, SECOND)), id="repeat-across-partitions"),
            pytest.param(ColumnContract("a", "int", unique=True), [1, 4, 2, 3], "column.unique", (True, 0, ()), id="overlapping-ranges-but-unique"),
            pytest.param(
                ColumnContract("a", "int", unique=True, max_null_fraction=1.0), [1, None, None, 3], "column.unique", (True, 0, ()), id="nulls-do-not-repeat"
            ),
            pytest.param(ColumnContract("a", "string", unique=True), ["b", "a", "a", "c"], "column.unique", (False, 2, (FIRST, SECOND)), id="strings-repeat"),
            pytest.param(ColumnContract("a", "string"), invalid_utf8(), "column.utf8", (False, 1, (FIRST,)), id="invalid-utf8"),
        ],
    )
    def test_rule(self, column, values, rule, outcome):
        found = only(check_columns(window({"a": values}), [column]), rule)
        assert (found.passed, found.failing_rows, found.partitions) == outcome
        assert found.column == "a"
        assert found.message.startswith(f"{rule}: column 'a': ")

    @pytest.mark.parametrize(
        ("column", "values", "rule"),
        [
            pytest.param(ColumnContract("a", "string"), ["a", "b", "c", "d"], "column.utf8", id="valid-text-reports-nothing"),
            pytest.param(ColumnContract("a", "float", allow_non_finite=True), [NAN, INF, 1.0, 2.0], "column.finite", id="non-finite-allowed"),
            pytest.param(ColumnContract("a", "int"), [1, 2, 3, 4], "column.range", id="no-bounds"),
            pytest.param(ColumnContract("a", "int"), [1, 1, 1, 1], "column.unique", id="not-required-unique"),
        ],
    )
    def test_a_rule_that_does_not_apply_is_absent(self, column, values, rule):
        rules = check_columns(window({"a": values}), [column])
        assert rule not in {r.rule for r in rules}
        assert all(r.passed for r in rules)

    def test_failures_describe_what_was_found(self):
        rules = check_columns(
            window({"age": [1, 2, 3, 400], "region": ["eu", "us", "mars", "eu"]}),
            [ColumnContract("age", "int", minimum=0, maximum=120), ColumnContract("region", "string", allowed=("eu", "us"))],
        )
        out_of_range, unexpected = only(rules, "column.range"), only(rules, "column.allowed_values")
        assert (out_of_range.observed, out_of_range.expected) == ({"min": 1, "max": 400}, [0, 120])
        assert out_of_range.message == "column.range: column 'age': 1 of 4 rows outside [0, 120] (observed min 1, max 400) in dt=2026-02-02"
        assert (unexpected.observed, unexpected.expected) == (["mars"], ["eu", "us"])
        assert "e.g. ['mars'] in dt=2026-02-02" in unexpected.message

    @pytest.mark.parametrize("cores", [pytest.param(1, id="one-core"), pytest.param(8, id="many-cores")])
    def test_rules_come_in_column_order_on_one_core_or_many(self, monkeypatch, cores):
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        columns = [ColumnContract(name, "int", minimum=0) for name in "dcba"]
        rules = check_columns(window({name: [1, 2, -3, 4] for name in "dcba"}), columns)
        assert [(r.rule, r.column, r.passed) for r in rules] == [
            (rule, name, ok) for name in "dcba" for rule, ok in (("column.nulls", True), ("column.range", False))
        ]


def timestamps(*hours: float | None) -> pa.Array:
    """UTC event times, ``hours`` after the window's first midnight."""
    start = dt.datetime.combine(DAYS[0], dt.time(), tzinfo=dt.UTC)
    return pa.array([None if h is None else start + dt.timedelta(hours=h) for h in hours], pa.timestamp("ns", tz="UTC"))


def contract(max_delay_hours: float | None = None) -> DataContract:
    return DataContract(columns=(), rows=RowCountContract(), max_delay_hours=max_delay_hours)


END = dt.datetime(2026, 2, 3, tzinfo=dt.UTC)


def check(events: pa.Array, *, max_delay_hours: float | None = None, interval_end: dt.datetime = END) -> list[RuleResult]:
    rules: list[RuleResult] = []
    check_timestamps(window({"event_ts": events}), "event_ts", interval_end, contract(max_delay_hours), rules)
    return rules


class TestCheckTimestamps:
    @pytest.mark.parametrize(
        ("hours", "outcome"),
        [
            pytest.param((0, 23.99, 24, 36), (True, 0, ()), id="each-in-its-day"),
            pytest.param((1, 2, 23, 30), (False, 1, (SECOND,)), id="a-late-row-filed-a-day-early"),
            pytest.param((1, 24, 25, 26), (False, 1, (FIRST,)), id="next-midnight-is-the-next-day"),
            pytest.param((-1, 2, 25, 49), (False, 2, (FIRST, SECOND)), id="both-partitions"),
            pytest.param((None, 2, 25, None), (True, 0, ()), id="nulls-are-not-out-of-day"),
        ],
    )
    def test_in_partition_day(self, hours, outcome):
        rule = only(check(timestamps(*hours)), "timestamp.in_partition_day")
        assert (rule.passed, rule.failing_rows, rule.partitions) == outcome

    def test_no_freshness_rule_without_a_maximum_delay(self):
        assert [r.rule for r in check(timestamps(1, 2, 25, 36))] == ["timestamp.in_partition_day"]

    @pytest.mark.parametrize(
        ("max_delay_hours", "interval_end", "passed"),
        [
            pytest.param(12, END, True, id="exactly-the-maximum"),
            pytest.param(11.5, END, False, id="older-than-the-maximum"),
            pytest.param(12, END.replace(tzinfo=None), True, id="naive-interval-end-is-utc"),
            pytest.param(11.5, END.replace(tzinfo=None), False, id="naive-interval-end-too-late"),
        ],
    )
    def test_freshness(self, max_delay_hours, interval_end, passed):
        rule = only(check(timestamps(1, 2, 25, 36), max_delay_hours=max_delay_hours, interval_end=interval_end), "timestamp.freshness")
        assert (rule.passed, rule.observed, rule.expected) == (passed, 12.0, f"{max_delay_hours} h")
        assert rule.partitions == ()  # late data blames no partition

    def test_no_timestamps_at_all_is_not_fresh(self):
        rules = check(timestamps(None, None, None, None), max_delay_hours=24)
        assert only(rules, "timestamp.in_partition_day").passed
        freshness = only(rules, "timestamp.freshness")
        assert (freshness.passed, freshness.message) == (False, "timestamp.freshness: column 'event_ts' has no timestamps")
