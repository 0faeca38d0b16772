from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import TrainingExitCode
from mlops_airflow.exceptions import MlopsError, TrackingServerUnavailableError, TrainingFailedError
from mlops_airflow.operators.training import LocalModelTrainingOperator, raise_for_exit_code, resolve_window_end, training_command

RUN_AFTER = dt.datetime(2026, 3, 4, 10, 30, tzinfo=dt.UTC)


class TestResolveWindowEnd:
    @pytest.mark.parametrize(
        ("value", "context", "expected"),
        [
            pytest.param("2026-02-01", {}, dt.date(2026, 2, 1), id="explicit-param"),
            pytest.param("2026-02-01T00:00:00+00:00", {}, dt.date(2026, 2, 1), id="explicit-timestamp"),
            pytest.param(dt.date(2026, 2, 2), {}, dt.date(2026, 2, 2), id="date-object"),
            pytest.param("", {"data_interval_end": dt.datetime(2026, 3, 2, 3, tzinfo=dt.UTC)}, dt.date(2026, 3, 2), id="scheduled-run"),
            pytest.param(None, {"data_interval_end": None}, dt.date(2026, 3, 4), id="manual-run-without-logical-date"),
        ],
    )
    def test_resolution(self, value, context, expected):
        context = {"dag_run": SimpleNamespace(run_after=RUN_AFTER), **context}
        assert resolve_window_end(value, context) == expected

    def test_bad_value_fails_without_retry(self):
        with pytest.raises(AirflowFailException, match="window_end: expected a date"):
            resolve_window_end("next tuesday", {})


class TestRaiseForExitCode:
    def test_ok(self):
        raise_for_exit_code(0, [])

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
        python="python",
    )
    assert command == [
        "python", "-m", "mlops_airflow.training",
        "--spec", "/specs/churn.yaml",
        "--window-start", "2026-01-01",
        "--window-end", "2026-01-29",
        "--result-path", "/airflow/xcom/return.json",
        "--idempotency-key", "retrain_churn/run",
        "--tag", "a=1", "--tag", "b=2",
    ]  # fmt: skip


def test_constructor_does_no_io(tmp_path):
    # The spec is only read in execute(): a missing file must not break DAG parsing.
    operator = LocalModelTrainingOperator(task_id="train_model", spec_path=str(tmp_path / "missing.yaml"), window_end="{{ params.window_end }}")
    assert operator.template_fields == ("window_end", "window_days", "reason")
