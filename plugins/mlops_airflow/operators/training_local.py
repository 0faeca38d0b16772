"""Training operators: run ``python -m mlops_airflow.training`` and return its result as XCom.

Where it sits in the loop: check data -> **train** -> evaluate -> promote.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

import mlops_airflow
from mlops_airflow.constants import DEFAULT_MLFLOW_CONN_ID, TAG_DAG_RUN, TAG_REASON, TRAINING_PARENT_PID_ENV, TrainingExitCode
from mlops_airflow.exceptions import TrackingServerUnavailableError, TrainingFailedError
from mlops_airflow.utils.task_args import as_date, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

# How long the entrypoint gets to exit after SIGTERM before it is killed.
_TERMINATE_GRACE_SECONDS = 15


def training_command(
    *,
    spec_path: str,
    window_start: dt.date | str,
    window_end: dt.date | str,
    result_path: str,
    idempotency_key: str,
    tags: dict[str, str],
    data_report_uri: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The entrypoint's argv; shared by every backend so they run the same thing.

    Values may be Jinja templates: the pod and container operators render their command.
    """
    command = [
        python,
        "-m",
        "mlops_airflow.training",
        "--spec",
        spec_path,
        "--window-start",
        str(window_start),
        "--window-end",
        str(window_end),
        "--result-path",
        result_path,
        "--idempotency-key",
        idempotency_key,
    ]
    if data_report_uri:
        command += ["--data-report", data_report_uri]
    for key, value in sorted(tags.items()):
        command += ["--tag", f"{key}={value}"]
    return command


# The file contract of the pod and container backends (KubernetesPodOperator's XCom path).
CONTAINER_RESULT_PATH = "/airflow/xcom/return.json"
# Pods and containers get the spec as YAML text in this variable, not as a file in the image.
CONTAINER_SPEC_ENV = "MLOPS_MODEL_SPEC"


def container_training_command(*, window_start: str, window_end: str, data_report_uri: str | None, reason: str) -> list[str]:
    """The entrypoint's argv inside a pod or container, with Jinja the operator renders."""
    run = "{{ dag_run.dag_id }}/{{ dag_run.run_id }}"
    return training_command(
        python="python",
        spec_path=f"env:{CONTAINER_SPEC_ENV}",
        window_start=window_start,
        window_end=window_end,
        result_path=CONTAINER_RESULT_PATH,
        idempotency_key=run,
        data_report_uri=data_report_uri,
        tags={TAG_DAG_RUN: run, TAG_REASON: reason},
    )


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


class LocalModelTrainingOperator(FailFastTemplates, BaseOperator):
    """
    Train a model version with the training entrypoint as a local subprocess.

    The embedded default and single-machine installs use this backend; the pod and
    container backends run the same entrypoint and return the same XCom.

    :param spec_path: path of the model spec YAML, readable on the worker.
    :param window_start: first day of the training window, ``YYYY-MM-DD`` (templated).
    :param window_end: day after the last day of the window (templated).
    :param data_report_uri: the data check's report, logged to the MLflow run (templated).
    :param reason: why the run was started, recorded as the MLflow run tag ``mlops.reason`` (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("window_start", "window_end", "data_report_uri", "reason")
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
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.window_start = window_start
        self.window_end = window_end
        self.data_report_uri = data_report_uri
        self.reason = reason
        self.mlflow_conn_id = mlflow_conn_id
        self._process: subprocess.Popen[str] | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.hooks.mlflow import MlflowHook

        spec = load_task_spec(self.spec_path)
        window_start, window_end = as_date(self.window_start, "window_start"), as_date(self.window_end, "window_end")
        if (window_end - window_start).days <= spec.training.validation_days:
            raise AirflowFailException(
                f"the window {window_start}..{window_end} must be longer than the spec's validation_days ({spec.training.validation_days})"
            )

        dag_run = context["dag_run"]
        # An allow-list of this worker's environment (never Airflow's keys or connections), MLflow's
        # URI and credentials, and MLflow's pickle loaders switched off.
        from mlops_airflow.utils.process_env import child_env

        env = child_env(MlflowHook(mlflow_conn_id=self.mlflow_conn_id).get_env())
        package_root = str(Path(mlops_airflow.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env[TRAINING_PARENT_PID_ENV] = str(os.getpid())  # the entrypoint ends itself if this task process dies

        with tempfile.TemporaryDirectory(prefix="mlops-train-") as folder:
            result_path = os.path.join(folder, "return.json")
            command = training_command(
                spec_path=self.spec_path,
                window_start=window_start,
                window_end=window_end,
                result_path=result_path,
                # Try-independent: a retry after a lost worker reuses the finished run.
                idempotency_key=f"{dag_run.dag_id}/{dag_run.run_id}",
                data_report_uri=self.data_report_uri or None,
                tags={
                    TAG_DAG_RUN: f"{dag_run.dag_id}/{dag_run.run_id}",
                    TAG_REASON: self.reason,
                },
            )
            self.log.info("Training %s on %s..%s (end exclusive)", spec.name, window_start, window_end)
            returncode, tail = self._run(command, env)
            raise_for_exit_code(returncode, tail)
            result = json.loads(Path(result_path).read_text(encoding="utf-8"))
        self.log.info("Registered %s version %s (run %s)", result["registered_model_name"], result["version"], result["run_id"])
        return result

    def _run(self, command: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
        """Run the entrypoint in its own process group, streaming its output into the task log.

        The time limit is the task's ``execution_timeout``: Airflow then calls
        :meth:`on_kill`, which ends the whole process group.
        """
        tail: deque[str] = deque(maxlen=20)
        self._process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip()
            self.log.info("%s", line)
            tail.append(line)
        returncode = self._process.wait()
        self._process = None
        return returncode, list(tail)

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=_TERMINATE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def on_kill(self) -> None:
        self._terminate()
