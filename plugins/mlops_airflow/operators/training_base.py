"""What the three training operators share: the entrypoint's arguments and their docs, its exit codes, its result.

Where it sits in the loop: check data -> **train** -> evaluate -> promote. The backends are
:class:`~mlops_airflow.operators.training_local.LocalModelTrainingOperator` (a subprocess),
:class:`~mlops_airflow.operators.training_docker.ModelTrainingDockerOperator` and
:class:`~mlops_airflow.operators.training_pod.ModelTrainingPodOperator`; each is this base
over its Airflow operator, as astronomer-cosmos's ``AbstractDbtBase`` serves its backends.
It is an operator itself, so Airflow sees its arguments: ``default_args`` fill them, and
``.partial()`` / ``.expand()`` accept them on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import DEFAULT_MLFLOW_CONN_ID, TrainingExitCode
from mlops_airflow.exceptions import TrackingServerUnavailableError, TrainingFailedError
from mlops_airflow.training.command_line import container_training_command
from mlops_airflow.utils.task_args import read_payload


class ModelTrainingBase(BaseOperator):
    """
    Train a model version with ``python -m mlops_airflow.training``; the XCom is its
    :class:`~mlops_airflow.core.payloads.TrainingResult`, whatever the backend.

    :param spec_path: path of the model spec YAML, readable on the worker (the container
        backends hand it over as YAML text).
    :param window_start: first day of the training window, ``YYYY-MM-DD`` (templated).
    :param window_end: day after the last day of the window (templated).
    :param data_report_uri: the data check's report, logged to the MLflow run (templated).
    :param reason: why the run was started, recorded as the MLflow run tag ``mlops.reason`` (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    """

    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        spec_path: str,
        window_start: str,
        window_end: str,
        data_report_uri: str | None = None,
        reason: str = "",
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        **kwargs: Any,
    ) -> None:
        backend = self.backend_arguments(window_start=window_start, window_end=window_end, data_report_uri=data_report_uri, reason=reason)
        super().__init__(**backend, **kwargs)
        self.spec_path = spec_path
        self.window_start = window_start
        self.window_end = window_end
        self.data_report_uri = data_report_uri
        self.reason = reason
        self.mlflow_conn_id = mlflow_conn_id

    def backend_arguments(self, *, window_start: str, window_end: str, data_report_uri: str | None, reason: str) -> dict[str, Any]:
        """Keyword arguments of the backend's own operator that carry the training arguments (none for a subprocess)."""
        return {}

    @staticmethod
    def container_arguments(*, window_start: str, window_end: str, data_report_uri: str | None, reason: str) -> list[str]:
        """The entrypoint's argv in a container, without ``python`` (rendered by the backend operator)."""
        return container_training_command(window_start=window_start, window_end=window_end, data_report_uri=data_report_uri, reason=reason)[1:]

    def training_result(self, value: Any) -> dict[str, Any]:
        """The entrypoint's result file as the task's XCom, refused (no retry) when it is not a training result."""
        from mlops_airflow.core.payloads import TrainingResult

        result = read_payload(TrainingResult, value, "the training entrypoint's result")
        self.log.info("Registered %s version %s (run %s)", result.registered_model_name, result.version, result.run_id)  # type: ignore[attr-defined]
        return result.to_xcom()


def raise_for_exit_code(returncode: int, tail: Sequence[str]) -> None:
    """Turn the entrypoint's exit code into the right Airflow decision."""
    if returncode == TrainingExitCode.OK:
        return
    last_lines = "\n".join(tail[-5:])
    if returncode in (TrainingExitCode.BAD_DATA, TrainingExitCode.BAD_ARGUMENTS):
        # A retry reads the same data and the same spec: fail without retrying.
        raise AirflowFailException(f"training refused its input (exit {returncode}):\n{last_lines}")
    if returncode == TrainingExitCode.TRACKING_UNREACHABLE:
        raise TrackingServerUnavailableError(f"training could not reach MLflow (exit {returncode}):\n{last_lines}")
    raise TrainingFailedError(f"training failed (exit {returncode}):\n{last_lines}")
