"""DataContractCheckOperator: stop bad data before it trains or scores anything.

Where it sits in the loop: partitions -> **check** -> train / score / drift.
The operator reads (through ``ObjectStoragePath``), calls :mod:`mlops_airflow.core.contract`,
reports and decides; the rules themselves live there.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.core.partitions import days_between
from mlops_airflow.hooks.partition_storage import QUARANTINE_FOLDER, partition_row_count, quarantine_partition, read_partition, safe_name
from mlops_airflow.observability.metrics import DATA_CHECK_ROWS, DATA_CHECK_RULES_FAILED, gauge
from mlops_airflow.utils.task_args import as_utc_datetime, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context


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
        from mlops_airflow.core.contract import evaluate_contract
        from mlops_airflow.core.contract_results import LabelRule

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
            **result.as_dict(),
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
