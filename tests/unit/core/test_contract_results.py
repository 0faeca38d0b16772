"""ContractResult: which rules failed, which partitions to quarantine, the summary line and the JSON-ready report."""

from __future__ import annotations

import json

import pytest

from mlops_airflow.core.contract_results import ContractResult, PartitionSummary, RuleResult

START, END = "2026-02-01T00:00:00+00:00", "2026-02-03T00:00:00+00:00"
OK = RuleResult("rows.per_partition", True, "rows.per_partition: 3..3 rows per partition")
RANGE = RuleResult(
    "column.range",
    False,
    "column.range: column 'age': 1 of 6 rows outside [0, 120] in dt=2026-02-02",
    column="age",
    observed={"min": 1, "max": 400},
    expected=[0, 120],
    failing_rows=1,
    partitions=("2026-02-02",),
)
FRESHNESS = RuleResult("timestamp.freshness", False, "timestamp.freshness: newest event_ts is 30.0 h old (max 24 h)", observed=30.0, expected="24 h")


def summary(day: str, *, present: bool = True, passed: bool = True, rows: int = 3) -> PartitionSummary:
    return PartitionSummary(day=day, present=present, readable=present, rows=rows if present else 0, passed=passed)


def result(*rules: RuleResult, partitions: tuple[PartitionSummary, ...] = ()) -> ContractResult:
    partitions = partitions or (summary("2026-02-01"), summary("2026-02-02"))
    return ContractResult(rules=rules, partitions=partitions, rows=sum(p.rows for p in partitions), interval_start=START, interval_end=END)


class TestContractResult:
    @pytest.mark.parametrize(
        ("rules", "passed", "failed"),
        [
            pytest.param((OK,), True, (), id="all-pass"),
            pytest.param((OK, RANGE), False, (RANGE,), id="one-fails"),
            pytest.param((RANGE, OK, FRESHNESS), False, (RANGE, FRESHNESS), id="failures-in-rule-order"),
        ],
    )
    def test_passed_and_failed_rules(self, rules, passed, failed):
        checked = result(*rules)
        assert (checked.passed, checked.failed_rules) == (passed, failed)

    @pytest.mark.parametrize(
        ("partitions", "quarantined"),
        [
            pytest.param((summary("2026-02-01"), summary("2026-02-02")), (), id="none-failed"),
            pytest.param((summary("2026-02-01"), summary("2026-02-02", passed=False)), ("2026-02-02",), id="a-failed-day"),
            pytest.param((summary("2026-02-01", present=False, passed=False), summary("2026-02-02")), (), id="a-missing-day-is-not-quarantined"),
        ],
    )
    def test_failed_partitions_are_the_present_days_that_failed(self, partitions, quarantined):
        assert result(OK, partitions=partitions).failed_partitions == quarantined

    def test_the_summary_of_a_pass_counts_rules_rows_and_partitions(self):
        assert result(OK).summary() == f"data contract passed: 1 rules, 6 rows in 2 partitions ({START}..{END})"

    def test_the_summary_of_a_failure_lists_each_failed_rule(self):
        lines = result(OK, RANGE, FRESHNESS).summary().splitlines()
        assert lines == [f"data contract failed: 2 of 3 rules ({START}..{END}):", f"  - {RANGE.message}", f"  - {FRESHNESS.message}"]

    def test_as_dict_is_the_whole_result_as_json(self):
        partitions = (summary("2026-02-01"), summary("2026-02-02", passed=False), summary("2026-02-03", present=False, passed=False))
        report = json.loads(json.dumps(result(OK, RANGE, partitions=partitions).as_dict()))
        assert {key: report[key] for key in ("passed", "interval_start", "interval_end", "rows", "rules_failed", "failed_partitions")} == {
            "passed": False,
            "interval_start": START,
            "interval_end": END,
            "rows": 6,
            "rules_failed": 1,
            "failed_partitions": ["2026-02-02"],
        }
        assert [p["day"] for p in report["partitions"]] == ["2026-02-01", "2026-02-02", "2026-02-03"]
        assert report["partitions"][2] == {"day": "2026-02-03", "present": False, "readable": False, "rows": 0, "passed": False}
        assert [r["rule"] for r in report["rules"]] == ["rows.per_partition", "column.range"]
        assert report["rules"][1] == {
            "rule": "column.range",
            "passed": False,
            "message": RANGE.message,
            "column": "age",
            "observed": {"min": 1, "max": 400},
            "expected": [0, 120],
            "failing_rows": 1,
            "partitions": ["2026-02-02"],
        }
