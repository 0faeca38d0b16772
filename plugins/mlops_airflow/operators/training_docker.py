"""ModelTrainingDockerOperator: the training entrypoint as a Docker container with GPU device requests.

Imported only by DAGs whose spec asks for the ``docker`` backend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator, stringify
from airflow.sdk.exceptions import AirflowException

from mlops_airflow.operators.training_base import ModelTrainingBase, raise_for_exit_code
from mlops_airflow.training.command_line import CONTAINER_RESULT_PATH, CONTAINER_SPEC_ENV
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

SPEC_ENV = CONTAINER_SPEC_ENV
RESULT_PATH = CONTAINER_RESULT_PATH


class ModelTrainingDockerOperator(ModelTrainingBase, FailFastTemplates, DockerOperator):
    """
    Train a model version in a Docker container running ``python -m mlops_airflow.training``.

    For a single machine with GPUs and Docker: the container asks for the spec's GPUs through
    Docker device requests, runs as a non-root user with every capability dropped and
    ``no-new-privileges``, and gets the MLflow credentials as private environment (never
    rendered or logged). Its root filesystem stays writable: the result file is copied out
    after the container exits, which Docker cannot do from a tmpfs. The result file ``/airflow/xcom/return.json`` is copied out of the
    container and returned as the task's XCom, the same contract as the other backends.

    The command is a list, run in exec form with ``python`` itself as the entrypoint: no shell
    (not even an image's entrypoint script) re-reads the reason, window or report URI, which
    come from Params and XCom. Docker expands no ``$(VAR)``, so they pass unchanged.

    The training arguments are :class:`~mlops_airflow.operators.training_base.ModelTrainingBase`'s
    (the window, report and reason are templated as part of ``command``), and:

    :param gpus: how many GPUs to request; 0 requests none.
    """

    template_fields: Sequence[str] = DockerOperator.template_fields

    def __init__(self, *, gpus: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("user", "10001:10001")
        super().__init__(
            retrieve_output=True,
            retrieve_output_path=RESULT_PATH,
            auto_remove="success",
            mount_tmp_dir=False,
            **kwargs,
        )
        self.gpus = gpus
        self.pickling_library = json  # the result file is JSON, read back with json.load

    def backend_arguments(self, *, window_start: str, window_end: str, data_report_uri: str | None, reason: str) -> dict[str, Any]:
        # Exec form with python itself as the entrypoint: no shell re-reads these values.
        arguments = self.container_arguments(window_start=window_start, window_end=window_end, data_report_uri=data_report_uri, reason=reason)
        return {"entrypoint": ["python"], "command": arguments}

    def execute(self, context: Context) -> Any:
        from docker.types import DeviceRequest

        from mlops_airflow.core.model_loading import SAFE_MODEL_ENV
        from mlops_airflow.hooks.mlflow import MlflowHook

        mlflow_env = MlflowHook(mlflow_conn_id=self.mlflow_conn_id).get_env()
        self.environment = {
            **(self.environment or {}),
            SPEC_ENV: Path(self.spec_path).read_text(encoding="utf-8"),
            "MLFLOW_TRACKING_URI": mlflow_env.pop("MLFLOW_TRACKING_URI"),
            "MLFLOW_REGISTRY_URI": mlflow_env.pop("MLFLOW_REGISTRY_URI"),
            "HOME": "/tmp",  # noqa: S108 - the container's own tmpfs
            **SAFE_MODEL_ENV,  # no MLflow loader in the container deserialises pickle
        }
        self._private_environment = {**self._private_environment, **mlflow_env}  # credentials: never rendered or logged
        if self.gpus:
            self.device_requests = [DeviceRequest(count=self.gpus, capabilities=[["gpu"]])]
        # The result file, as every backend returns it (a trainer image older than versioned payloads too).
        return self.training_result(super().execute(context))

    def _run_image_with_mounts(self, target_mounts, add_tmp_variable: bool):
        # DockerOperator has no arguments for these: add them to the host config it builds.
        create_host_config = self.cli.create_host_config

        def hardened_host_config(**kwargs):
            kwargs.update(security_opt=["no-new-privileges:true"], cap_drop=["ALL"])
            return create_host_config(**kwargs)

        self.cli.create_host_config = hardened_host_config
        try:
            return super()._run_image_with_mounts(target_mounts, add_tmp_variable)
        except DockerContainerFailedException as err:
            # The entrypoint's exit code decides: bad data or arguments (2, 3) are not retried.
            exit_code = self.cli.inspect_container(self.container["Id"])["State"]["ExitCode"]
            try:
                raise_for_exit_code(exit_code, [stringify(line) for line in (err.logs or [])])
            except AirflowException as decision:
                raise decision from err
            raise
        finally:
            self.cli.create_host_config = create_host_config
