"""What every training backend shares: the exit-code decision and the result's shape."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import TrainingExitCode
from mlops_airflow.exceptions import MlopsError, TrackingServerUnavailableError, TrainingFailedError
from mlops_airflow.operators.training_base import raise_for_exit_code


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


@pytest.mark.parametrize(
    ("backend", "own"),
    [
        pytest.param("mlops_airflow.operators.training_local.LocalModelTrainingOperator", {}, id="local"),
        pytest.param("mlops_airflow.operators.training_docker.ModelTrainingDockerOperator", {"image": "trainer:1"}, id="docker"),
        pytest.param("mlops_airflow.operators.training_pod.ModelTrainingPodOperator", {"image": "trainer:1"}, id="kubernetes"),
    ],
)
class TestEveryBackendTakesTheTrainingArguments:
    @staticmethod
    def operator_class(backend: str):
        import importlib

        module, name = backend.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)

    def test_default_args_fill_them(self, backend, own):
        from airflow.sdk import DAG

        with DAG("retrain_churn", schedule=None, default_args={"mlflow_conn_id": "mlflow_prod", "reason": "nightly", "spec_path": "/specs/churn.yaml"}):
            operator = self.operator_class(backend)(task_id="train_model", window_start="2026-01-01", window_end="2026-01-29", **own)
        assert (operator.spec_path, operator.mlflow_conn_id, operator.reason) == ("/specs/churn.yaml", "mlflow_prod", "nightly")

    def test_partial_and_expand_accept_them(self, backend, own):
        from airflow.sdk import DAG

        with DAG("retrain_churn", schedule=None):
            mapped = (
                self.operator_class(backend)
                .partial(task_id="train_model", spec_path="/specs/churn.yaml", window_start="2026-01-01", **own)
                .expand(window_end=["2026-01-29", "2026-02-05"])
            )
        assert mapped.partial_kwargs["spec_path"] == "/specs/churn.yaml"

    def test_a_missing_training_argument_is_refused(self, backend, own):
        with pytest.raises(TypeError, match="window_end"):
            self.operator_class(backend)(task_id="train_model", spec_path="/specs/churn.yaml", window_start="2026-01-01", **own)
