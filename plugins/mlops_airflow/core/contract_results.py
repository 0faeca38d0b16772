"""What a data contract check found: the rules, the partitions, the result the check task reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


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

    def as_dict(self) -> dict[str, Any]:
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
