"""The window a data contract is evaluated over: the partitions concatenated with a partition index per row, and how a rule's mask becomes a result."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
from mlops_airflow.core.contract_results import RuleResult

EXAMPLES = 5


@dataclass
class Window:
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


def dtype_matches(arrow_type: pa.DataType, dtype: str) -> bool:
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


def normalised_type(dtype: str) -> pa.DataType:
    import pyarrow as pa

    return {"int": pa.int64(), "float": pa.float64(), "string": pa.large_string(), "bool": pa.bool_(), "timestamp": pa.timestamp("ns", tz="UTC")}[dtype]


def to_numpy_mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    import numpy as np
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def shown_value(value: Any) -> Any:
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


def where(names: tuple[str, ...]) -> str:
    shown = ", ".join(f"dt={d}" for d in names[:5])
    return f" in {shown}{' and more' if len(names) > 5 else ''}" if names else ""


def rule_from_mask(window: Window, rule: str, column: str, mask: np.ndarray, describe: str, observed: Any, expected: Any, rules: list[RuleResult]) -> None:
    counts = window.per_partition(mask)
    failing = int(counts.sum())
    names = window.names(counts)
    total = window.table.num_rows
    message = f"{rule}: column {column!r}: {failing} of {total} rows {describe}{where(names)}" if failing else f"{rule}: column {column!r}: ok"
    rules.append(RuleResult(rule, failing == 0, message, column=column, observed=observed, expected=expected, failing_rows=failing, partitions=names))


def passed_rule(rule: str, column: str, expected: Any, observed: Any = None) -> RuleResult:
    return RuleResult(rule, True, f"{rule}: column {column!r}: ok", column=column, observed=observed, expected=expected)
