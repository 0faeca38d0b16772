"""The data contract's column rules: type, nulls, ranges, allowed values, uniqueness, valid UTF-8, timestamps."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from mlops_airflow.specs import ColumnContract, DataContract

if TYPE_CHECKING:
    import pyarrow as pa
from mlops_airflow.core.contract_results import RuleResult
from mlops_airflow.core.contract_window import EXAMPLES, Window, passed_rule, rule_from_mask, shown_value, to_numpy_mask, where

_UTF8_SCAN_LIMIT = 1000


def check_columns(window: Window, columns: list[ColumnContract]) -> list[RuleResult]:
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


def _check_column(window: Window, column: ColumnContract, rules: list[RuleResult]) -> None:
    """Each rule first asks a cheap aggregate (null count, min/max, sum, distinct values) and
    builds a per-row mask, to count and locate the violations, only when the aggregate fails."""
    import math

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    name = column.name
    values = window.table.column(name)
    if values.null_count == 0:
        rules.append(passed_rule("column.nulls", name, column.max_null_fraction, 0.0))
    else:
        _check_nulls(window, column, values, rules)

    extremes = pc.min_max(values) if column.dtype in ("int", "float") else None
    low, high = (shown_value(extremes["min"]), shown_value(extremes["max"])) if extremes is not None else (None, None)

    if column.dtype == "float" and not column.allow_non_finite:
        total = pc.sum(values).as_py()  # NaN or +-inf anywhere makes the sum non-finite
        if total is None or (math.isfinite(total) and math.isfinite(low) and math.isfinite(high)):
            rules.append(passed_rule("column.finite", name, 0, 0))
        else:
            non_finite = to_numpy_mask(pc.or_(pc.is_nan(values), pc.is_inf(values)))
            rule_from_mask(window, "column.finite", name, non_finite, "are NaN or +-inf", int(non_finite.sum()), 0, rules)

    if column.minimum is not None or column.maximum is not None:
        bounds = [column.minimum, column.maximum]
        observed = {"min": low, "max": high}
        finite_low = low is None or (isinstance(low, float) and math.isnan(low)) or column.minimum is None or low >= column.minimum
        finite_high = high is None or (isinstance(high, float) and math.isnan(high)) or column.maximum is None or high <= column.maximum
        if finite_low and finite_high:
            rules.append(passed_rule("column.range", name, bounds, observed))
        else:
            below = pc.less(values, column.minimum) if column.minimum is not None else pa.nulls(len(values), pa.bool_())
            above = pc.greater(values, column.maximum) if column.maximum is not None else pa.nulls(len(values), pa.bool_())
            outside = to_numpy_mask(below) | to_numpy_mask(above)
            rule_from_mask(window, "column.range", name, outside, f"outside {bounds} (observed min {low}, max {high})", observed, bounds, rules)

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
            rules.append(passed_rule("column.allowed_values", name, list(column.allowed), distinct))
        else:
            examples = [shown_value(v) for v in unexpected_values[:EXAMPLES]]
            value_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
            unexpected = to_numpy_mask(pc.is_in(values, value_set=pa.array(unexpected_values, type=value_type)))
            rule_from_mask(
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
            rules.append(passed_rule("column.unique", name, "unique"))
        else:
            plain = values.cast(values.type.value_type) if pa.types.is_dictionary(values.type) else values
            counts = pc.value_counts(plain.drop_null())
            repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
            duplicated = to_numpy_mask(pc.is_in(plain, value_set=repeated)) if len(repeated) else np.zeros(len(values), dtype=bool)
            examples = [shown_value(v) for v in repeated.to_pylist()[:EXAMPLES]]
            rule_from_mask(window, "column.unique", name, duplicated, f"share a value with another row, e.g. {examples}", examples, "unique", rules)


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


def _is_unique(window: Window, values: pa.ChunkedArray) -> bool:
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


def _check_nulls(window: Window, column: ColumnContract, values: pa.ChunkedArray, rules: list[RuleResult]) -> None:
    import numpy as np
    import pyarrow.compute as pc

    null_counts = window.per_partition(to_numpy_mask(pc.is_null(values)))
    fractions = null_counts / np.maximum(window.sizes, 1)
    over = fractions > column.max_null_fraction
    if not over.any():
        rules.append(passed_rule("column.nulls", column.name, column.max_null_fraction, round(float(fractions.max()), 6)))
        return
    names = tuple(window.days[i].isoformat() for i in np.flatnonzero(over))
    worst = float(fractions.max())
    failing = int(null_counts[over].sum())
    rules.append(
        RuleResult(
            "column.nulls",
            False,
            f"column.nulls: column {column.name!r}: null fraction up to {worst:.3f} (max {column.max_null_fraction}), {failing} null rows{where(names)}",
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


def _check_utf8(window: Window, name: str, values: pa.ChunkedArray, rules: list[RuleResult]) -> None:
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
    rule_from_mask(window, "column.utf8", name, mask, f"hold bytes that are not valid UTF-8{capped}", len(bad_rows), "valid UTF-8", rules)


def check_timestamps(window: Window, column: str, interval_end: dt.datetime, contract: DataContract, rules: list[RuleResult]) -> None:
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
        rules.append(passed_rule("timestamp.in_partition_day", column, "within the partition's day", 0))
    else:
        nanos = values.cast("int64").to_numpy(zero_copy_only=False)
        valid = ~to_numpy_mask(pc.is_null(values))
        start = day_starts[window.part]
        outside = valid & ((nanos < start) | (nanos >= start + nanoseconds_per_day))
        rule_from_mask(
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
