from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import TrainingExitCode
from mlops_airflow.exceptions import MlopsError, TrackingServerUnavailableError, TrainingFailedError
from mlops_airflow.operators.training import LocalModelTrainingOperator, raise_for_exit_code, training_command


class TestRaiseForExitCode:
    def test_ok(self):
        assert raise_for_exit_code(0, ["training finished"]) is None  # success: nothing raised

    @pytest.mark.parametrize(
        ("code", "error"),
        [
            pytest.param(TrainingExitCode.BAD_DATA, AirflowFailException, id="bad-data-no-retry"),
            pytest.param(TrainingExitCode.BAD_ARGUMENTS, AirflowFailException, id="bad-arguments-no-retry"),
            pytest.param(TrainingExitCode.TRACKING_UNREACHABLE, TrackingServerUnavailableError, id="tracking-retry"),
            pytest.param(TrainingExitCode.FAILED, TrainingFailedError, id="crash-retry"),
            pytest.param(-9, TrainingFailedError, id="killed-retry"),
        ],
    )
    def test_mapping(self, code, error):
        with pytest.raises(error) as info:
            raise_for_exit_code(code, ["line 1", "the reason"])
        assert "the reason" in str(info.value)
        assert isinstance(info.value, MlopsError) == (error is not AirflowFailException)


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


def test_constructor_does_no_io(tmp_path):
    # The spec is only read in execute(): a missing file must not break DAG parsing.
    operator = LocalModelTrainingOperator(task_id="train_model", spec_path=str(tmp_path / "missing.yaml"), window_start="{{ ds }}", window_end="{{ ds }}")
    assert operator.template_fields == ("window_start", "window_end", "data_report_uri", "reason")
