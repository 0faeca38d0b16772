"""DataContractCheckOperator over files on disk: a corruption corpus, quarantine and reports."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException
from helpers import REPO_ROOT

from mlops_airflow.core.partitions import write_partition
from mlops_airflow.embedded.synthetic import generate_day
from mlops_airflow.hooks.partition_storage import safe_name
from mlops_airflow.operators.data_checks import DataContractCheckOperator

SEEDS = range(10)
ROWS = 300
HISTORY_START = dt.date(2026, 4, 1)
WINDOW = [dt.date(2026, 4, 8) + dt.timedelta(days=i) for i in range(3)]
BAD_DAY = WINDOW[1]
SPEC_PATH = str(REPO_ROOT / "include" / "models" / "churn.yaml")


def day_table(seed: int, day: dt.date = BAD_DAY, rows: int = ROWS) -> pa.Table:
    return pa.Table.from_pandas(generate_day(day, rows=rows, seed=seed), preserve_index=False)


def replace_column(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def with_floats(table: pa.Table, name: str, value: float, count: int = 5) -> pa.Table:
    values = table.column(name).to_pylist()
    values[:count] = [value] * count
    return replace_column(table, name, pa.array(values, type=pa.float64(), from_pandas=False))


def rewrite(folder: Path, table: pa.Table) -> None:
    pq.write_table(table, folder / "part-0.parquet")


# Each corruption changes the partition folder of BAD_DAY and names the rule that must catch it.
def truncated_file(folder, seed):
    data = (folder / "part-0.parquet").read_bytes()
    (folder / "part-0.parquet").write_bytes(data[: len(data) // 2])


def not_parquet(folder, seed):
    (folder / "part-0.parquet").write_text("customer_id,tenure_months\nx,1\n")


def missing_column(folder, seed):
    rewrite(folder, day_table(seed).drop_columns(["region"]))


def extra_column(folder, seed):
    table = day_table(seed)
    rewrite(folder, table.append_column("debug_flag", pa.array([True] * table.num_rows)))


def wrong_dtype(folder, seed):
    table = day_table(seed)
    rewrite(folder, replace_column(table, "monthly_charges", table.column("monthly_charges").cast(pa.string())))


def zero_rows(folder, seed):
    rewrite(folder, day_table(seed).slice(0, 0))


def missing_partition(folder, seed):
    shutil.rmtree(folder)


def empty_folder(folder, seed):
    (folder / "part-0.parquet").unlink()


def nan_values(folder, seed):
    rewrite(folder, with_floats(day_table(seed), "monthly_charges", float("nan")))


def inf_values(folder, seed):
    rewrite(folder, with_floats(day_table(seed), "total_spend", float("inf")))


def out_of_range(folder, seed):
    table = day_table(seed)
    values = table.column("tenure_months").to_pylist()
    values[seed] = 500
    rewrite(folder, replace_column(table, "tenure_months", pa.array(values, type=pa.int64())))


def null_in_required(folder, seed):
    table = day_table(seed)
    values = table.column("contract").to_pylist()
    values[seed] = None
    rewrite(folder, replace_column(table, "contract", pa.array(values, type=pa.string())))


def all_null_column(folder, seed):
    table = day_table(seed)
    rewrite(folder, replace_column(table, "days_since_last_login", pa.nulls(table.num_rows, pa.float64())))


def unseen_category(folder, seed):
    table = day_table(seed)
    values = table.column("region").to_pylist()
    values[seed] = "atlantis"
    rewrite(folder, replace_column(table, "region", pa.array(values)))


def duplicated_file(folder, seed):
    shutil.copy(folder / "part-0.parquet", folder / "part-1.parquet")


def duplicate_ids(folder, seed):
    table = day_table(seed)
    values = table.column("customer_id").to_pylist()
    values[1 + seed] = values[0]
    rewrite(folder, replace_column(table, "customer_id", pa.array(values)))


def stale_timestamps(folder, seed):
    table = day_table(seed)
    stale = pa.compute.subtract(table.column("event_ts"), pa.scalar(dt.timedelta(days=30)))
    rewrite(folder, replace_column(table, "event_ts", stale))


def ten_x_rows(folder, seed):
    rewrite(folder, day_table(seed, rows=10 * ROWS))


def non_utf8(folder, seed):
    table = day_table(seed)
    values = [v.encode() for v in table.column("customer_id").to_pylist()]
    values[seed] = b"\xff\xfe-not-utf8"
    rewrite(folder, replace_column(table, "customer_id", pa.array(values, type=pa.binary()).view(pa.string())))


def label_outside_classes(folder, seed):
    table = day_table(seed)
    values = table.column("churned").to_pylist()
    values[seed] = 2
    rewrite(folder, replace_column(table, "churned", pa.array(values, type=pa.int64())))


CORRUPTIONS = {
    truncated_file: "partition.readable",
    not_parquet: "partition.readable",
    missing_column: "schema.column_present",
    extra_column: "schema.no_extra_columns",
    wrong_dtype: "schema.dtype",
    zero_rows: "rows.per_partition",
    missing_partition: "partition.present",
    empty_folder: "partition.present",
    nan_values: "column.finite",
    inf_values: "column.finite",
    out_of_range: "column.range",
    null_in_required: "column.nulls",
    all_null_column: "column.nulls",
    unseen_category: "column.allowed_values",
    duplicated_file: "rows.duplicates",
    duplicate_ids: "column.unique",
    stale_timestamps: "timestamp.in_partition_day",
    ten_x_rows: "rows.vs_trailing_mean",
    non_utf8: "column.utf8",
    label_outside_classes: "column.allowed_values",
}


def write_days(base: Path, seed: int) -> None:
    for day in [HISTORY_START + dt.timedelta(days=i) for i in range(7)] + WINDOW:
        write_partition(day_table(seed, day), f"file://{base}", day)


def file_digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def run_check(base: Path, reports: Path, *, check_label=True, run_id="manual__2026-04-11T00:00:00+00:00"):
    operator = DataContractCheckOperator(
        task_id="check_training_data",
        spec_path=SPEC_PATH,
        interval_start=WINDOW[0].isoformat(),
        interval_end=(WINDOW[-1] + dt.timedelta(days=1)).isoformat(),
        check_label=check_label,
        base_uri=f"file://{base}",
        reports_uri=f"file://{reports}",
    )
    context = {"dag_run": SimpleNamespace(dag_id="retrain_churn", run_id=run_id)}
    return operator.execute(context)


@pytest.mark.parametrize("seed", SEEDS)
def test_good_data_passes(tmp_path, seed):
    write_days(tmp_path / "data", seed)
    result = run_check(tmp_path / "data", tmp_path / "reports")
    assert result["passed"] is True
    assert result["rows"] == 3 * ROWS
    report = json.loads(Path(result["report_uri"].removeprefix("file://")).read_text())
    assert report["rules_failed"] == 0
    assert report["quarantined"] == []


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("corrupt", "rule"), list(CORRUPTIONS.items()), ids=[c.__name__ for c in CORRUPTIONS])
def test_bad_data_fails_names_the_rule_and_quarantines_every_byte(tmp_path, corrupt, rule, seed):
    base = tmp_path / "data"
    write_days(base, seed)
    folder = base / f"dt={BAD_DAY}"
    corrupt(folder, seed)
    before = file_digests(folder) if folder.exists() else {}
    run_id = f"manual__seed{seed}"

    with pytest.raises(AirflowFailException) as info:
        run_check(base, tmp_path / "reports", run_id=run_id)

    message = str(info.value)
    assert f"  - {rule}" in message, message
    report_path = tmp_path / "reports" / "retrain_churn" / safe_name(run_id) / "check_training_data.json"
    report = json.loads(report_path.read_text())
    assert rule in {r["rule"] for r in report["rules"] if not r["passed"]}
    assert f"Report: file://{report_path}" in message
    # The good days stay where they are.
    assert all((base / f"dt={day}").is_dir() for day in WINDOW if day != BAD_DAY)
    if before:
        # Quarantined byte for byte, nothing deleted.
        quarantined = base / "_quarantine" / safe_name(run_id) / f"dt={BAD_DAY}"
        assert not folder.exists()
        assert file_digests(quarantined) == before
        assert report["quarantined"][0]["sha256"] == before
    else:
        assert report["quarantined"] == []


def test_scoring_checks_ignore_the_label(tmp_path):
    base = tmp_path / "data"
    write_days(base, 0)
    label_outside_classes(base / f"dt={BAD_DAY}", 0)
    assert run_check(base, tmp_path / "reports", check_label=False)["passed"] is True


def test_quarantine_never_overwrites(tmp_path):
    base = tmp_path / "data"
    write_days(base, 0)
    out_of_range(base / f"dt={BAD_DAY}", 0)
    occupied = base / "_quarantine" / "same-run" / f"dt={BAD_DAY}"
    occupied.mkdir(parents=True)
    with pytest.raises(AirflowFailException, match="already exists; refusing to overwrite"):
        run_check(base, tmp_path / "reports", run_id="same-run")
    assert (base / f"dt={BAD_DAY}" / "part-0.parquet").exists()


def test_metrics_are_sent(tmp_path, statsd):
    write_days(tmp_path / "data", 0)
    run_check(tmp_path / "data", tmp_path / "reports")
    assert statsd(2) == sorted([f"mlops.data_check.churn.rows:{3 * ROWS}|g", "mlops.data_check.churn.rules_failed:0|g"])


def test_bad_interval_is_a_clear_failure(tmp_path):
    operator = DataContractCheckOperator(task_id="c", spec_path=SPEC_PATH, interval_start="2026-04-10", interval_end="2026-04-09")
    with pytest.raises(AirflowFailException, match="must be after interval_start"):
        operator.execute({"dag_run": SimpleNamespace(dag_id="d", run_id="r")})
