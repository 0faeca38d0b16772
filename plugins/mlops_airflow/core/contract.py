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
from typing import TYPE_CHECKING

from mlops_airflow.core.contract_columns import check_columns, check_timestamps
from mlops_airflow.core.contract_results import ContractResult, LabelRule, PartitionInput, PartitionSummary, RuleResult
from mlops_airflow.core.contract_window import Window, dtype_matches, normalised_type, where
from mlops_airflow.core.row_hashes import duplicate_row_mask
from mlops_airflow.specs import ColumnContract, DataContract

if TYPE_CHECKING:
    pass


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
        rules.extend(check_columns(window, columns))
        check_timestamps(window, timestamp_column, interval_end, contract, rules)
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
        elif not dtype_matches(schema.field(column.name).type, column.dtype):
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


def _concatenate(good: list[PartitionInput], columns: list[ColumnContract]) -> Window | None:
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
        tables = [t.cast(pa.schema([pa.field(c.name, normalised_type(c.dtype)) for c in columns]), safe=False) for t in tables]
    table = pa.concat_tables(tables)
    sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
    part_index = np.repeat(np.arange(len(tables), dtype=np.int32), sizes)
    return Window(table=table, part=part_index, days=[p.day for p in good], sizes=sizes)


def _check_row_counts(window: Window, contract: DataContract, history: Sequence[int], rules: list[RuleResult]) -> None:
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


def _check_duplicates(window: Window, contract: DataContract, columns: list[str], rules: list[RuleResult]) -> None:
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
        f"rows.duplicates: {duplicates} of {window.table.num_rows} rows repeat an earlier row (fraction {fraction:.4f}, max {contract.max_duplicate_fraction}){where(names)}"
        if not passed
        else f"rows.duplicates: {duplicates} duplicate rows (max fraction {contract.max_duplicate_fraction})"
    )
    rules.append(
        RuleResult(
            "rows.duplicates", passed, message, observed=round(fraction, 6), expected=contract.max_duplicate_fraction, failing_rows=duplicates, partitions=names
        )
    )
