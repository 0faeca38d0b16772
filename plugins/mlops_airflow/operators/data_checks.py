"""DataContractCheckOperator: stop bad data before it trains or scores anything.

Where it sits in the loop: partitions -> **check** -> train / score / drift.
The operator reads (through ``ObjectStoragePath``), calls :mod:`mlops_airflow.core.contract`,
reports and decides; the rules themselves live there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.core.partitions import days_between, partition_uri
from mlops_airflow.observability.metrics import DATA_CHECK_ROWS, DATA_CHECK_RULES_FAILED, gauge
from mlops_airflow.utils.task_args import as_utc_datetime, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.core.contract import PartitionInput

QUARANTINE_FOLDER = "_quarantine"


def safe_name(value: str) -> str:
    """A run id as one path segment (run ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


def sha256(path: ObjectStoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_parquet(path: ObjectStoragePath, dictionary_columns: Sequence[str] = ()):
    """Read one Parquet file; local files take pyarrow's native reader (threads, no Python I/O).

    ``dictionary_columns`` (categoricals) are read dictionary-encoded: no string is materialised
    per row, and their distinct values are the dictionaries.
    """
    import pyarrow.parquet as pq

    options = {"read_dictionary": list(dictionary_columns)} if dictionary_columns else {}
    if path.protocol in ("file", "local", ""):
        return pq.read_table(path.path, **options)
    return pq.read_table(path.path, filesystem=path.fs, **options)


def read_partition(base_uri: str, day: dt.date, conn_id: str | None, dictionary_columns: Sequence[str] = ()) -> PartitionInput:
    """Read one day's Parquet files; what cannot be read becomes a finding, not a traceback."""
    import pyarrow as pa

    from mlops_airflow.core.contract import PartitionInput

    folder = ObjectStoragePath(partition_uri(base_uri, day), conn_id=conn_id)
    if not folder.exists():
        return PartitionInput(day=day, present=False)
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))), key=lambda p: p.name)
    if not files:
        return PartitionInput(day=day, present=False)
    names = tuple(p.name for p in files)
    tables = []
    for path in files:
        try:
            tables.append(read_parquet(path, dictionary_columns))
        except (pa.ArrowException, OSError, ValueError) as err:
            return PartitionInput(day=day, error=f"{path.name}: {err}", files=names)
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as err:
        return PartitionInput(day=day, error=f"files have different schemas: {err}", files=names)
    return PartitionInput(day=day, table=table, files=names)


def partition_row_count(base_uri: str, day: dt.date, conn_id: str | None) -> int:
    """Rows of a partition from the Parquet footers only; 0 when absent or unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = ObjectStoragePath(partition_uri(base_uri, day), conn_id=conn_id)
    if not folder.exists():
        return 0
    rows = 0
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith((".", "_")):
            try:
                with path.open("rb") as handle:
                    rows += pq.ParquetFile(handle).metadata.num_rows
            except (pa.ArrowException, OSError, ValueError):
                return 0
    return rows


def quarantine_partition(base_uri: str, day: dt.date, run_id: str, conn_id: str | None) -> dict[str, Any]:
    """Move a partition under ``_quarantine/<run_id>/`` and prove its bytes arrived unchanged.

    On a local filesystem the move is one atomic rename; on object storage it is the
    store's move, and the checksums after it are compared with those before.
    """
    source = ObjectStoragePath(partition_uri(base_uri, day), conn_id=conn_id)
    target = ObjectStoragePath(f"{base_uri.rstrip('/')}/{QUARANTINE_FOLDER}/{safe_name(run_id)}/{source.name}", conn_id=conn_id)
    before = {p.name: sha256(p) for p in source.iterdir() if p.is_file()}
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise AirflowFailException(f"quarantine target {target} already exists; refusing to overwrite it")
    source.rename(target)
    after = {p.name: sha256(p) for p in target.iterdir() if p.is_file()}
    if after != before:
        raise AirflowFailException(f"quarantined files of dt={day} do not match their checksums: before {before}, after {after}")
    return {"day": day.isoformat(), "from": str(source), "to": str(target), "sha256": before}


class DataContractCheckOperator(FailFastTemplates, BaseOperator):
    """
    Check the partitions of ``[interval_start, interval_end)`` against the model's data contract.

    Bad data fails the task without retries (``AirflowFailException``) with a message that
    names each failed rule, column, observed and expected values and row counts, so the
    run's downstream tasks do not run. With ``on_failure: quarantine`` the failed
    partitions are first moved under ``<data uri>/_quarantine/<run_id>/``. The JSON report
    of every rule is written to ``<reports uri>/<dag_id>/<run_id>/<task_id>.json`` in both
    cases; on success its location and a summary are the task's XCom.

    :param spec_path: path of the model spec YAML.
    :param interval_start: first day (or instant) of the window (templated).
    :param interval_end: end of the window, exclusive (templated).
    :param check_label: also require the label column, non-null and within its classes (training).
    :param base_uri: partitions to check; the spec's ``data.uri`` by default (templated).
    :param reports_uri: where reports go; the spec's ``data.reports_uri`` by default (templated).
    :param conn_id: connection for the object store, if it needs one.
    """

    template_fields: Sequence[str] = ("interval_start", "interval_end", "base_uri", "reports_uri")
    ui_color = "#fdebd0"

    def __init__(
        self,
        *,
        spec_path: str,
        interval_start: str,
        interval_end: str,
        check_label: bool = False,
        base_uri: str | None = None,
        reports_uri: str | None = None,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.interval_start = interval_start
        self.interval_end = interval_end
        self.check_label = check_label
        self.base_uri = base_uri
        self.reports_uri = reports_uri
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.contract import LabelRule, evaluate_contract

        spec = load_task_spec(self.spec_path)
        start = as_utc_datetime(self.interval_start, "interval_start")
        end = as_utc_datetime(self.interval_end, "interval_end")
        if end <= start:
            raise AirflowFailException(f"interval_end ({end}) must be after interval_start ({start})")
        base_uri = self.base_uri or spec.data.uri
        first_day = start.date()
        last_day = (end - dt.timedelta(microseconds=1)).date()
        days = days_between(first_day, last_day + dt.timedelta(days=1))
        trailing = days_between(first_day - dt.timedelta(days=spec.contract.rows.trailing_days), first_day)

        categoricals = [c.name for c in spec.contract.columns if c.dtype == "string" and c.allowed]
        partitions = [read_partition(base_uri, day, self.conn_id, categoricals) for day in days]
        history = [partition_row_count(base_uri, day, self.conn_id) for day in trailing]
        label = LabelRule(spec.target.column, spec.target.classes) if self.check_label else None
        result = evaluate_contract(
            spec.contract,
            partitions,
            interval_start=start,
            interval_end=end,
            timestamp_column=spec.data.timestamp_column,
            label=label,
            ignore_columns=() if self.check_label else (spec.target.column,),
            history_row_counts=history,
        )

        run_id = context["dag_run"].run_id
        quarantined = []
        if not result.passed and spec.contract.on_failure == "quarantine":
            for day in result.failed_partitions:
                quarantined.append(quarantine_partition(base_uri, dt.date.fromisoformat(day), run_id, self.conn_id))
                self.log.warning("Quarantined dt=%s under %s", day, quarantined[-1]["to"])

        report = {
            "model": spec.name,
            "dag_id": context["dag_run"].dag_id,
            "run_id": run_id,
            "task_id": self.task_id,
            "data_uri": base_uri,
            "check_label": self.check_label,
            **result.to_dict(),
            "quarantined": quarantined,
        }
        report_uri = self._write_report(report, spec, context)
        gauge(DATA_CHECK_RULES_FAILED, len(result.failed_rules), model=spec.name)
        gauge(DATA_CHECK_ROWS, result.rows, model=spec.name)

        if not result.passed:
            moved = f"\nQuarantined {len(quarantined)} partitions under {base_uri}/{QUARANTINE_FOLDER}/{safe_name(run_id)}/" if quarantined else ""
            raise AirflowFailException(f"{result.summary()}{moved}\nReport: {report_uri}")
        self.log.info("%s. Report: %s", result.summary(), report_uri)
        return {"passed": True, "report_uri": report_uri, "rows": result.rows, "rules": len(result.rules), "partitions": len(result.partitions)}

    def _write_report(self, report: dict[str, Any], spec, context: Context) -> str:
        """Write the report atomically: a temporary object, then a rename."""
        reports_uri = self.reports_uri or spec.data.reports_uri
        folder = ObjectStoragePath(f"{reports_uri.rstrip('/')}/{safe_name(report['dag_id'])}/{safe_name(report['run_id'])}", conn_id=self.conn_id)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{self.task_id}.json"
        temporary = folder / f".{self.task_id}.json.tmp"
        temporary.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
        temporary.rename(final)
        return str(final)
