"""Evaluate a data contract over a window of partitions: pure, vectorised, no Airflow.

Where it sits in the loop: partitions -> **check** -> train / score / drift.

Every rule is computed on whole columns with pyarrow compute and numpy (no Python loop
over rows). The partitions of a window are concatenated with a partition index beside
them, so each violation mask is counted per partition in one ``bincount``: a failed rule
names the partitions it failed in, and only those are quarantined.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_airflow.specs import ColumnContract, DataContract

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

_FNV_PRIME = 0x100000001B3
_EXAMPLES = 5
_UTF8_SCAN_LIMIT = 1000


@dataclass(frozen=True)
class LabelRule:
    """For training windows: the label must be present, non-null and one of ``classes``."""

    column: str
    classes: tuple[int, ...]


@dataclass(frozen=True)
class PartitionInput:
    """One day of the window as the reader found it."""

    day: dt.date
    table: pa.Table | None = None
    present: bool = True
    error: str | None = None
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    message: str
    column: str | None = None
    observed: Any = None
    expected: Any = None
    failing_rows: int = 0
    partitions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PartitionSummary:
    day: str
    present: bool
    readable: bool
    rows: int
    passed: bool


@dataclass(frozen=True)
class ContractResult:
    """Every rule's outcome; :attr:`failed_partitions` are the days to quarantine."""

    rules: tuple[RuleResult, ...]
    partitions: tuple[PartitionSummary, ...]
    rows: int
    interval_start: str
    interval_end: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def failed_rules(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if not r.passed)

    @property
    def failed_partitions(self) -> tuple[str, ...]:
        return tuple(p.day for p in self.partitions if p.present and not p.passed)

    def summary(self) -> str:
        if self.passed:
            return f"data contract passed: {len(self.rules)} rules, {self.rows} rows in {len(self.partitions)} partitions ({self.interval_start}..{self.interval_end})"
        lines = [f"data contract failed: {len(self.failed_rules)} of {len(self.rules)} rules ({self.interval_start}..{self.interval_end}):"]
        lines += [f"  - {r.message}" for r in self.failed_rules]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "interval_start": self.interval_start,
            "interval_end": self.interval_end,
            "rows": self.rows,
            "rules_failed": len(self.failed_rules),
            "failed_partitions": list(self.failed_partitions),
            "partitions": [asdict(p) for p in self.partitions],
            "rules": [asdict(r) for r in self.rules],
        }


@dataclass
class _Window:
    """The readable, well-formed partitions concatenated, with a partition index per row."""

    table: pa.Table
    part: np.ndarray
    days: list[dt.date]
    sizes: np.ndarray
    rules: list[RuleResult] = field(default_factory=list)

    def per_partition(self, mask: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.bincount(self.part[mask], minlength=len(self.days))

    def names(self, counts: np.ndarray) -> tuple[str, ...]:
        return tuple(self.days[i].isoformat() for i in range(len(self.days)) if counts[i])


def _dtype_matches(arrow_type: pa.DataType, dtype: str) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type  # a categorical read dictionary-encoded
    checks = {
        "int": pa.types.is_integer,
        "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
        "bool": pa.types.is_boolean,
        "timestamp": pa.types.is_timestamp,
    }
    return checks[dtype](arrow_type)


def _normalised_type(dtype: str) -> pa.DataType:
    import pyarrow as pa

    return {"int": pa.int64(), "float": pa.float64(), "string": pa.large_string(), "bool": pa.bool_(), "timestamp": pa.timestamp("ns", tz="UTC")}[dtype]


def _to_numpy_mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    import numpy as np
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _fmt(value: Any) -> Any:
    """JSON-friendly scalars."""
    if hasattr(value, "as_py"):
        value = value.as_py()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def _where(names: tuple[str, ...]) -> str:
    shown = ", ".join(f"dt={d}" for d in names[:5])
    return f" in {shown}{' and more' if len(names) > 5 else ''}" if names else ""


def evaluate_contract(
    contract: DataContract,
    partitions: Sequence[PartitionInput],
    *,
    interval_start: dt.datetime,
    interval_end: dt.datetime,
    timestamp_column: str,
    label: LabelRule | None = None,
    ignore_columns: Sequence[str] = (),
    history_row_counts: Sequence[int] = (),
) -> ContractResult:
    """Check ``partitions`` (one per day of the interval) against ``contract``.

    :param label: check the label for a training window; ``None`` leaves the label column
        alone (scoring data may not have labels yet).
    :param ignore_columns: contract columns not required in this window (the label when scoring).
    :param history_row_counts: row counts of the partitions before the interval, for the
        relative row-count rule.
    """
    columns = [c for c in contract.columns if c.name not in set(ignore_columns) or (label and c.name == label.column)]
    if label is not None:
        columns = [
            ColumnContract(name=c.name, dtype=c.dtype, allowed=tuple(label.classes), max_null_fraction=0.0) if c.name == label.column else c for c in columns
        ]
    rules: list[RuleResult] = []
    bad_days: set[str] = set()
    good: list[PartitionInput] = []

    for part in partitions:
        day = part.day.isoformat()
        if not part.present:
            if contract.require_all_partitions:
                rules.append(RuleResult("partition.present", False, f"partition.present: dt={day} is missing", partitions=(day,)))
            continue
        if part.error is not None or part.table is None:
            bad_days.add(day)
            rules.append(
                RuleResult("partition.readable", False, f"partition.readable: dt={day} cannot be read: {part.error}", observed=part.error, partitions=(day,))
            )
            continue
        schema_ok = _check_schema(part, columns, contract, ignore_columns, rules)
        if schema_ok:
            good.append(part)
        else:
            bad_days.add(day)

    present = [p for p in partitions if p.present]
    if not present:
        rules.append(RuleResult("partition.present", False, "partition.present: the window has no partition at all", expected=len(partitions)))

    window = _concatenate(good, columns)
    if window is not None:
        _check_row_counts(window, contract, history_row_counts, rules)
        rules.extend(_check_columns(window, columns))
        _check_timestamps(window, timestamp_column, interval_end, contract, rules)
        _check_duplicates(window, contract, [c.name for c in columns], rules)
    if not any(r.rule.startswith("partition.") or r.rule.startswith("schema.") for r in rules) and present:
        rules.insert(0, RuleResult("schema.columns", True, f"schema.columns: {len(columns)} columns with the expected types"))

    for rule in rules:
        if not rule.passed:
            bad_days.update(rule.partitions)
    summaries = tuple(
        PartitionSummary(
            day=p.day.isoformat(),
            present=p.present,
            readable=p.present and p.error is None and p.table is not None,
            rows=p.table.num_rows if p.table is not None else 0,
            passed=p.present and p.day.isoformat() not in bad_days,
        )
        for p in partitions
    )
    return ContractResult(
        rules=tuple(rules),
        partitions=summaries,
        rows=sum(s.rows for s in summaries),
        interval_start=interval_start.isoformat(),
        interval_end=interval_end.isoformat(),
    )


def _check_schema(part: PartitionInput, columns: list[ColumnContract], contract: DataContract, ignore: Sequence[str], rules: list[RuleResult]) -> bool:
    day = part.day.isoformat()
    schema = part.table.schema
    ok = True
    for column in columns:
        if column.name not in schema.names:
            ok = False
            rules.append(
                RuleResult(
                    "schema.column_present",
                    False,
                    f"schema.column_present: column {column.name!r} is missing in dt={day}",
                    column=column.name,
                    partitions=(day,),
                )
            )
        elif not _dtype_matches(schema.field(column.name).type, column.dtype):
            ok = False
            observed = str(schema.field(column.name).type)
            rules.append(
                RuleResult(
                    "schema.dtype",
                    False,
                    f"schema.dtype: column {column.name!r} is {observed} in dt={day}, expected {column.dtype}",
                    column=column.name,
                    observed=observed,
                    expected=column.dtype,
                    failing_rows=part.table.num_rows,
                    partitions=(day,),
                )
            )
    if contract.extra_columns == "forbid":
        known = {c.name for c in contract.columns} | set(ignore)
        extra = [n for n in schema.names if n not in known]
        if extra:
            ok = False
            rules.append(
                RuleResult(
                    "schema.no_extra_columns", False, f"schema.no_extra_columns: unexpected columns {extra} in dt={day}", observed=extra, partitions=(day,)
                )
            )
    return ok


def _concatenate(good: list[PartitionInput], columns: list[ColumnContract]) -> _Window | None:
    import numpy as np
    import pyarrow as pa

    if not good:
        return None
    tables = []
    for part in good:
        arrays = []
        for column in columns:
            array = part.table.column(column.name)
            if column.dtype == "timestamp" and array.type.tz is None:
                array = array.cast(pa.timestamp(array.type.unit, tz="UTC"))  # naive timestamps are read as UTC
            arrays.append(array)
        tables.append(pa.table(arrays, names=[c.name for c in columns]))
    if any(t.schema != tables[0].schema for t in tables[1:]):
        # Partitions disagree on widths (int32 / int64, string / large_string): widen them all.
        tables = [t.cast(pa.schema([pa.field(c.name, _normalised_type(c.dtype)) for c in columns]), safe=False) for t in tables]
    table = pa.concat_tables(tables)
    sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
    part_index = np.repeat(np.arange(len(tables), dtype=np.int32), sizes)
    return _Window(table=table, part=part_index, days=[p.day for p in good], sizes=sizes)


def _check_row_counts(window: _Window, contract: DataContract, history: Sequence[int], rules: list[RuleResult]) -> None:
    import numpy as np

    bounds = contract.rows
    too_few = window.sizes < bounds.minimum
    too_many = window.sizes > bounds.maximum if bounds.maximum is not None else np.zeros_like(too_few)
    failing = too_few | too_many
    expected = [bounds.minimum, bounds.maximum]
    if failing.any():
        names = tuple(window.days[i].isoformat() for i in np.flatnonzero(failing))
        observed = {window.days[i].isoformat(): int(window.sizes[i]) for i in np.flatnonzero(failing)}
        rules.append(
            RuleResult(
                "rows.per_partition",
                False,
                f"rows.per_partition: row counts {observed} outside [{bounds.minimum}, {bounds.maximum}]",
                observed=observed,
                expected=expected,
                partitions=names,
            )
        )
    else:
        rules.append(
            RuleResult(
                "rows.per_partition", True, f"rows.per_partition: {int(window.sizes.min())}..{int(window.sizes.max())} rows per partition", expected=expected
            )
        )

    if bounds.min_ratio_to_trailing_mean is None and bounds.max_ratio_to_trailing_mean is None:
        return
    history = [h for h in history if h > 0]
    if not history:
        rules.append(RuleResult("rows.vs_trailing_mean", True, "rows.vs_trailing_mean: skipped, no earlier partitions to compare with"))
        return
    mean = float(np.mean(history))
    ratios = window.sizes / mean
    low = bounds.min_ratio_to_trailing_mean if bounds.min_ratio_to_trailing_mean is not None else 0.0
    high = bounds.max_ratio_to_trailing_mean if bounds.max_ratio_to_trailing_mean is not None else np.inf
    failing = (ratios < low) | (ratios > high)
    expected = [low, None if high == np.inf else high]
    if failing.any():
        observed = {window.days[i].isoformat(): round(float(ratios[i]), 3) for i in np.flatnonzero(failing)}
        rules.append(
            RuleResult(
                "rows.vs_trailing_mean",
                False,
                f"rows.vs_trailing_mean: row count / trailing mean ({mean:.0f} rows over {len(history)} days) is {observed}, expected within {expected}",
                observed=observed,
                expected=expected,
                partitions=tuple(observed),
            )
        )
    else:
        rules.append(RuleResult("rows.vs_trailing_mean", True, f"rows.vs_trailing_mean: within {expected} of {mean:.0f}", expected=expected))


def _rule_from_mask(window: _Window, rule: str, column: str, mask: np.ndarray, describe: str, observed: Any, expected: Any, rules: list[RuleResult]) -> None:
    counts = window.per_partition(mask)
    failing = int(counts.sum())
    names = window.names(counts)
    total = window.table.num_rows
    message = f"{rule}: column {column!r}: {failing} of {total} rows {describe}{_where(names)}" if failing else f"{rule}: column {column!r}: ok"
    rules.append(RuleResult(rule, failing == 0, message, column=column, observed=observed, expected=expected, failing_rows=failing, partitions=names))


def _check_columns(window: _Window, columns: list[ColumnContract]) -> list[RuleResult]:
    """Columns are independent: check them on all cores (pyarrow and numpy release the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def check(column: ColumnContract) -> list[RuleResult]:
        found: list[RuleResult] = []
        _check_column(window, column, found)
        return found

    workers = min(len(columns), os.cpu_count() or 1)
    if workers <= 1:
        return [r for c in columns for r in check(c)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="contract") as pool:
        return [r for found in pool.map(check, columns) for r in found]


def _passed(rule: str, column: str, expected: Any, observed: Any = None) -> RuleResult:
    return RuleResult(rule, True, f"{rule}: column {column!r}: ok", column=column, observed=observed, expected=expected)


def _check_column(window: _Window, column: ColumnContract, rules: list[RuleResult]) -> None:
    """Each rule first asks a cheap aggregate (null count, min/max, sum, distinct values) and
    builds a per-row mask, to count and locate the violations, only when the aggregate fails."""
    import math

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    name = column.name
    values = window.table.column(name)
    if values.null_count == 0:
        rules.append(_passed("column.nulls", name, column.max_null_fraction, 0.0))
    else:
        _check_nulls(window, column, values, rules)

    extremes = pc.min_max(values) if column.dtype in ("int", "float") else None
    low, high = (_fmt(extremes["min"]), _fmt(extremes["max"])) if extremes is not None else (None, None)

    if column.dtype == "float" and not column.allow_non_finite:
        total = pc.sum(values).as_py()  # NaN or +-inf anywhere makes the sum non-finite
        if total is None or (math.isfinite(total) and math.isfinite(low) and math.isfinite(high)):
            rules.append(_passed("column.finite", name, 0, 0))
        else:
            non_finite = _to_numpy_mask(pc.or_(pc.is_nan(values), pc.is_inf(values)))
            _rule_from_mask(window, "column.finite", name, non_finite, "are NaN or +-inf", int(non_finite.sum()), 0, rules)

    if column.minimum is not None or column.maximum is not None:
        bounds = [column.minimum, column.maximum]
        observed = {"min": low, "max": high}
        finite_low = low is None or (isinstance(low, float) and math.isnan(low)) or column.minimum is None or low >= column.minimum
        finite_high = high is None or (isinstance(high, float) and math.isnan(high)) or column.maximum is None or high <= column.maximum
        if finite_low and finite_high:
            rules.append(_passed("column.range", name, bounds, observed))
        else:
            below = pc.less(values, column.minimum) if column.minimum is not None else pa.nulls(len(values), pa.bool_())
            above = pc.greater(values, column.maximum) if column.maximum is not None else pa.nulls(len(values), pa.bool_())
            outside = _to_numpy_mask(below) | _to_numpy_mask(above)
            _rule_from_mask(window, "column.range", name, outside, f"outside {bounds} (observed min {low}, max {high})", observed, bounds, rules)

    if column.dtype == "string":
        _check_utf8(window, name, values, rules)

    if column.allowed is not None:
        allowed = set(column.allowed)
        if pa.types.is_dictionary(values.type) and {v for chunk in values.chunks for v in chunk.dictionary.to_pylist()} <= allowed:
            distinct = sorted({v for chunk in values.chunks for v in chunk.dictionary.to_pylist()}, key=str)  # every entry allowed: no row can break the rule
        else:
            distinct = pc.unique(values).drop_null().to_pylist()
        unexpected_values = [v for v in distinct if v not in allowed]
        if not unexpected_values:
            rules.append(_passed("column.allowed_values", name, list(column.allowed), distinct))
        else:
            examples = [_fmt(v) for v in unexpected_values[:_EXAMPLES]]
            value_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
            unexpected = _to_numpy_mask(pc.is_in(values, value_set=pa.array(unexpected_values, type=value_type)))
            _rule_from_mask(
                window,
                "column.allowed_values",
                name,
                unexpected,
                f"hold values outside the allowed set, e.g. {examples}",
                examples,
                list(column.allowed),
                rules,
            )

    if column.unique:
        if _is_unique(window, values):
            rules.append(_passed("column.unique", name, "unique"))
        else:
            plain = values.cast(values.type.value_type) if pa.types.is_dictionary(values.type) else values
            counts = pc.value_counts(plain.drop_null())
            repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
            duplicated = _to_numpy_mask(pc.is_in(plain, value_set=repeated)) if len(repeated) else np.zeros(len(values), dtype=bool)
            examples = [_fmt(v) for v in repeated.to_pylist()[:_EXAMPLES]]
            _rule_from_mask(window, "column.unique", name, duplicated, f"share a value with another row, e.g. {examples}", examples, "unique", rules)


def _partition_key_range(part: pa.ChunkedArray) -> tuple[Any, Any] | None:
    """``(min, max)`` of a partition whose non-null values are unique, ``False`` if they repeat,
    ``None`` if it has no values. Strictly increasing keys are proved unique by one comparison
    pass; others by a hash table that, per partition, stays small."""
    import pyarrow.compute as pc

    size = len(part)
    if size - part.null_count == 0:
        return None
    if part.null_count == 0 and size > 1 and pc.all(pc.greater(part.slice(1), part.slice(0, size - 1))).as_py():
        return part[0].as_py(), part[size - 1].as_py()
    if pc.count_distinct(part, mode="only_valid").as_py() != size - part.null_count:
        return False
    extremes = pc.min_max(part)
    return extremes["min"].as_py(), extremes["max"].as_py()


def _is_unique(window: _Window, values: pa.ChunkedArray) -> bool:
    """Exact uniqueness of the non-null values.

    Fast path: each partition unique on its own and the partitions' value ranges disjoint
    (keys that carry their day or grow monotonically); partitions are checked in parallel and
    their hash tables stay in cache. Otherwise one global distinct count decides.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        # Compare bytes: ranges must not decode text (invalid UTF-8 is a rule of its own).
        values = values.cast(pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary())
    offsets = np.concatenate([[0], np.cumsum(window.sizes)])
    parts = [values.slice(offsets[i], size) for i, size in enumerate(window.sizes)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="unique") as pool:
        found = list(pool.map(_partition_key_range, parts))
    if any(r is False for r in found):
        return False  # a repeat inside one partition
    ranges = sorted(r for r in found if r is not None)
    if all(previous[1] < current[0] for previous, current in zip(ranges, ranges[1:], strict=False)):
        return True
    return pc.count_distinct(values, mode="only_valid").as_py() == len(values) - values.null_count


def _check_nulls(window: _Window, column: ColumnContract, values: pa.ChunkedArray, rules: list[RuleResult]) -> None:
    import numpy as np
    import pyarrow.compute as pc

    null_counts = window.per_partition(_to_numpy_mask(pc.is_null(values)))
    fractions = null_counts / np.maximum(window.sizes, 1)
    over = fractions > column.max_null_fraction
    if not over.any():
        rules.append(_passed("column.nulls", column.name, column.max_null_fraction, round(float(fractions.max()), 6)))
        return
    names = tuple(window.days[i].isoformat() for i in np.flatnonzero(over))
    worst = float(fractions.max())
    failing = int(null_counts[over].sum())
    rules.append(
        RuleResult(
            "column.nulls",
            False,
            f"column.nulls: column {column.name!r}: null fraction up to {worst:.3f} (max {column.max_null_fraction}), {failing} null rows{_where(names)}",
            column=column.name,
            observed=round(worst, 6),
            expected=column.max_null_fraction,
            failing_rows=failing,
            partitions=names,
        )
    )


def _invalid_utf8_rows(array: pa.Array, offset: int, budget: list[int]) -> list[int]:
    """Row offsets of invalid UTF-8 strings, by bisection with pyarrow's validator (vectorised per slice)."""
    import pyarrow as pa

    try:
        array.validate(full=True)
        return []
    except pa.ArrowInvalid:
        pass
    if len(array) == 1 or budget[0] <= 0:
        budget[0] -= 1
        return [offset]
    middle = len(array) // 2
    return _invalid_utf8_rows(array.slice(0, middle), offset, budget) + _invalid_utf8_rows(array.slice(middle), offset + middle, budget)


def _check_utf8(window: _Window, name: str, values: pa.ChunkedArray, rules: list[RuleResult]) -> None:
    import numpy as np

    bad_rows: list[int] = []
    budget = [_UTF8_SCAN_LIMIT]
    offset = 0
    for chunk in values.chunks:
        bad_rows += _invalid_utf8_rows(chunk, offset, budget)
        offset += len(chunk)
    if not bad_rows:
        return  # valid text is the normal case; only failures are reported
    mask = np.zeros(len(values), dtype=bool)
    mask[bad_rows] = True
    capped = " (at least; scan capped)" if budget[0] < 0 else ""
    _rule_from_mask(window, "column.utf8", name, mask, f"hold bytes that are not valid UTF-8{capped}", len(bad_rows), "valid UTF-8", rules)


def _check_timestamps(window: _Window, column: str, interval_end: dt.datetime, contract: DataContract, rules: list[RuleResult]) -> None:
    import numpy as np
    import pyarrow.compute as pc

    values = window.table.column(column)
    day_starts = np.array([np.datetime64(d, "ns").astype(np.int64) for d in window.days], dtype=np.int64)
    nanoseconds_per_day = 86_400 * 10**9
    offsets = np.concatenate([[0], np.cumsum(window.sizes)])
    # Per partition, the earliest and latest event: one pass; rows are located only on failure.
    in_day = True
    for i in range(len(window.days)):
        extremes = pc.min_max(values.slice(offsets[i], window.sizes[i]).cast("int64"))
        earliest, latest = extremes["min"].as_py(), extremes["max"].as_py()
        if earliest is not None and (earliest < day_starts[i] or latest >= day_starts[i] + nanoseconds_per_day):
            in_day = False
            break
    if in_day:
        rules.append(_passed("timestamp.in_partition_day", column, "within the partition's day", 0))
    else:
        nanos = values.cast("int64").to_numpy(zero_copy_only=False)
        valid = ~_to_numpy_mask(pc.is_null(values))
        start = day_starts[window.part]
        outside = valid & ((nanos < start) | (nanos >= start + nanoseconds_per_day))
        _rule_from_mask(
            window,
            "timestamp.in_partition_day",
            column,
            outside,
            "have an event time outside their partition's day",
            int(outside.sum()),
            "within the partition's day",
            rules,
        )

    if contract.max_delay_hours is None:
        return
    newest = pc.max(values).as_py()
    limit = f"{contract.max_delay_hours} h"
    if newest is None:
        rules.append(RuleResult("timestamp.freshness", False, f"timestamp.freshness: column {column!r} has no timestamps", column=column, expected=limit))
        return
    end_utc = interval_end if interval_end.tzinfo else interval_end.replace(tzinfo=dt.UTC)
    delay_hours = (end_utc - newest).total_seconds() / 3600
    passed = delay_hours <= contract.max_delay_hours
    message = f"timestamp.freshness: newest {column} is {newest.isoformat()}, {delay_hours:.1f} h before the interval end {end_utc.isoformat()} (max {limit})"
    # Late data is the window's problem, not a partition's: no partition is blamed (and none quarantined),
    # so the days that did arrive are still there when the late ones land.
    rules.append(RuleResult("timestamp.freshness", passed, message, column=column, observed=round(delay_hours, 3), expected=limit))


def row_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit hash per row: equal rows hash equal. Collisions are resolved by the caller."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    hashes = np.full(table.num_rows, 0xCBF29CE484222325, dtype=np.uint64)
    for array in table.columns:
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)  # chunks may carry different dictionaries
        kind = array.type
        if pa.types.is_floating(kind):
            codes = np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64).view(np.uint64)
        elif pa.types.is_integer(kind) or pa.types.is_timestamp(kind) or pa.types.is_boolean(kind):
            codes = np.asarray(pc.fill_null(array.cast(pa.int64()), -(2**62)).to_numpy(zero_copy_only=False)).view(np.uint64)
        else:
            # One dictionary over the whole column, so equal strings share one code.
            indices = array.combine_chunks().dictionary_encode().indices
            codes = np.asarray(pc.fill_null(indices, -1).cast(pa.int64()).to_numpy(zero_copy_only=False)).view(np.uint64)
        hashes ^= codes
        hashes *= np.uint64(_FNV_PRIME)
    # splitmix64 finaliser: spreads the bits so nearby inputs do not collide.
    hashes ^= hashes >> np.uint64(30)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(27)
    hashes *= np.uint64(0x94D049BB133111EB)
    hashes ^= hashes >> np.uint64(31)
    return hashes


def _same_as_previous(sorted_table: pa.Table) -> np.ndarray:
    """For rows sorted by every column: is row i equal to row i-1? Nulls equal nulls, NaN equals NaN."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    same = np.ones(max(sorted_table.num_rows - 1, 0), dtype=bool)
    for array in sorted_table.columns:
        array = array.combine_chunks()
        current, previous = array.slice(1), array.slice(0, len(array) - 1)
        equal = _to_numpy_mask(pc.equal(current, previous))
        equal |= _to_numpy_mask(pc.and_(pc.is_null(current), pc.is_null(previous)))
        if pa.types.is_floating(array.type):
            equal |= _to_numpy_mask(pc.and_(pc.is_nan(current), pc.is_nan(previous)))
        same &= equal
    return np.concatenate([[False], same])


def duplicate_row_mask(table: pa.Table) -> np.ndarray:
    """Rows equal to another row, one of each group excepted. Exact: hash candidates are compared in full."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table([c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns], names=table.column_names)
    hashes = pa.array(row_hashes(table))
    counts = pc.value_counts(hashes)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    mask = np.zeros(table.num_rows, dtype=bool)
    if not len(repeated):
        return mask
    candidates = np.flatnonzero(_to_numpy_mask(pc.is_in(hashes, value_set=repeated)))
    subset = table.take(pa.array(candidates))
    order = pc.sort_indices(subset, sort_keys=[(name, "ascending", "at_end") for name in subset.column_names]).to_numpy()
    same = _same_as_previous(subset.take(pa.array(order)))
    mask[candidates[order[same]]] = True
    return mask


def _check_duplicates(window: _Window, contract: DataContract, columns: list[str], rules: list[RuleResult]) -> None:
    import numpy as np

    # Two equal rows are equal in every column: a column that just proved unique, with no
    # nulls, rules out duplicate rows without hashing them.
    unique_columns = {r.column for r in rules if r.rule == "column.unique" and r.passed}
    proof = next((c for c in columns if c in unique_columns and window.table.column(c).null_count == 0), None)
    mask = np.zeros(window.table.num_rows, dtype=bool) if proof is not None else duplicate_row_mask(window.table.select(columns))
    counts = window.per_partition(mask)
    duplicates = int(counts.sum())
    fraction = duplicates / max(window.table.num_rows, 1)
    passed = fraction <= contract.max_duplicate_fraction
    names = () if passed else window.names(counts)
    message = (
        f"rows.duplicates: {duplicates} of {window.table.num_rows} rows repeat an earlier row (fraction {fraction:.4f}, max {contract.max_duplicate_fraction}){_where(names)}"
        if not passed
        else f"rows.duplicates: {duplicates} duplicate rows (max fraction {contract.max_duplicate_fraction})"
    )
    rules.append(
        RuleResult(
            "rows.duplicates", passed, message, observed=round(fraction, 6), expected=contract.max_duplicate_fraction, failing_rows=duplicates, partitions=names
        )
    )
