"""The entrypoint's argv, shared by every training backend."""

from __future__ import annotations

import datetime as dt

from mlops_airflow.training.command_line import training_command


def test_training_command_is_the_shared_entrypoint():
    command = training_command(
        spec_path="/specs/churn.yaml",
        window_start=dt.date(2026, 1, 1),
        window_end=dt.date(2026, 1, 29),
        result_path="/airflow/xcom/return.json",
        idempotency_key="retrain_churn/run",
        tags={"b": "2", "a": "1"},
        data_report_uri="file:///reports/check.json",
        python="python",
    )
    assert command == [
        "python", "-m", "mlops_airflow.training",
        "--spec", "/specs/churn.yaml",
        "--window-start", "2026-01-01",
        "--window-end", "2026-01-29",
        "--result-path", "/airflow/xcom/return.json",
        "--idempotency-key", "retrain_churn/run",
        "--data-report", "file:///reports/check.json",
        "--tag", "a=1", "--tag", "b=2",
    ]  # fmt: skip
