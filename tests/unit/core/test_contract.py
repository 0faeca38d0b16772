"""The contract rules as pure functions over Arrow tables."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from mlops_airflow.core.contract import evaluate_contract
from mlops_airflow.core.contract_results import LabelRule, PartitionInput
from mlops_airflow.embedded.synthetic import generate_day
from mlops_airflow.specs import load_spec

START = dt.date(2026, 2, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]


@pytest.fixture(scope="module")
def spec():
    from helpers import REPO_ROOT

    return load_spec(REPO_ROOT / "include" / "models" / "churn.yaml")


def partitions(rows=300, seed=7, change=None):
    parts = []
    for day in DAYS:
        frame = generate_day(day, rows=rows, seed=seed)
        if change is not None and day == DAYS[1]:
            frame = change(frame)
        parts.append(PartitionInput(day=day, table=pa.Table.from_pandas(frame, preserve_index=False)))
    return parts


def evaluate(spec, parts, **kwargs):
    defaults = {
        "interval_start": dt.datetime.combine(DAYS[0], dt.time(), tzinfo=dt.UTC),
        "interval_end": dt.datetime.combine(DAYS[-1] + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC),
        "timestamp_column": "event_ts",
        "label": LabelRule("churned", (0, 1)),
        "history_row_counts": [300] * 7,
    }
    return evaluate_contract(spec.contract, parts, **{**defaults, **kwargs})


def failed(result):
    return {r.rule: r for r in result.failed_rules}


def test_good_data_passes_every_rule(spec):
    result = evaluate(spec, partitions())
    assert result.passed, result.summary()
    assert result.rows == 900
    assert result.failed_partitions == ()
    assert {"column.nulls", "column.range", "column.allowed_values", "column.unique", "rows.duplicates", "timestamp.freshness", "rows.vs_trailing_mean"} <= {
        r.rule for r in result.rules
    }
    assert result.summary().startswith("data contract passed")


def test_failure_names_rule_column_counts_and_partition(spec):
    def corrupt(frame):
        frame.loc[:9, "tenure_months"] = 500
        return frame

    result = evaluate(spec, partitions(change=corrupt))
    rule = failed(result)["column.range"]
    assert rule.column == "tenure_months"
    assert rule.failing_rows == 10
    assert rule.partitions == (DAYS[1].isoformat(),)
    assert rule.observed["max"] == 500
    assert rule.expected == [1, 120]
    assert "10 of 900 rows outside [1, 120]" in rule.message
    assert f"dt={DAYS[1]}" in rule.message
    assert result.failed_partitions == (DAYS[1].isoformat(),)  # only the bad day is quarantined


def test_null_fraction_is_judged_per_partition(spec):
    def corrupt(frame):
        frame.loc[: int(len(frame) * 0.2), "days_since_last_login"] = None
        return frame

    rule = failed(evaluate(spec, partitions(change=corrupt)))["column.nulls"]
    assert rule.partitions == (DAYS[1].isoformat(),)
    assert rule.observed > 0.1


def test_label_rules_only_for_training(spec):
    def corrupt(frame):
        frame.loc[:4, "churned"] = 2
        return frame

    assert failed(evaluate(spec, partitions(change=corrupt)))["column.allowed_values"].column == "churned"
    scoring = evaluate(spec, partitions(change=lambda f: f.drop(columns=["churned"])), label=None, ignore_columns=("churned",))
    assert scoring.passed, scoring.summary()


def test_relative_row_count_needs_history(spec):
    result = evaluate(spec, partitions(), history_row_counts=[30] * 7)
    assert failed(result)["rows.vs_trailing_mean"].observed == {d.isoformat(): 10.0 for d in DAYS}
    skipped = evaluate(spec, partitions(), history_row_counts=[])
    assert skipped.passed
    assert "skipped" in next(r.message for r in skipped.rules if r.rule == "rows.vs_trailing_mean")


def test_freshness(spec):
    result = evaluate(spec, partitions(), interval_end=dt.datetime(2026, 2, 7, tzinfo=dt.UTC))
    rule = failed(result)["timestamp.freshness"]
    assert rule.observed > 30
    assert rule.partitions == ()  # late data: no partition is to blame, so none is quarantined


def test_report_is_json_ready(spec):
    import json

    report = evaluate(spec, partitions(change=lambda f: f.assign(region="atlantis"))).as_dict()
    assert json.loads(json.dumps(report))["rules_failed"] == 1
    assert report["rules"][0]["rule"]


def test_categoricals_read_as_dictionaries(spec):
    def as_dictionary(table: pa.Table, unused: str | None = None) -> pa.Table:
        index = table.schema.get_field_index("region")
        values = table.column("region").combine_chunks()
        dictionary = pa.array(sorted({*values.to_pylist(), *([unused] if unused else [])}))
        indices = pa.compute.index_in(values, value_set=dictionary)
        return table.set_column(index, "region", pa.DictionaryArray.from_arrays(indices, dictionary))

    parts = partitions()
    # A dictionary entry no row uses is not a violation; a row that uses it is.
    unused = [PartitionInput(day=p.day, table=as_dictionary(p.table, "atlantis")) for p in parts]
    assert evaluate(spec, unused).passed
    used = [PartitionInput(day=p.day, table=as_dictionary(p.table)) for p in partitions(change=lambda f: f.assign(region="atlantis"))]
    rule = failed(evaluate(spec, used))["column.allowed_values"]
    assert (rule.failing_rows, rule.observed) == (300, ["atlantis"])
