"""LocalModelTrainingOperator: the training entrypoint as a subprocess of the task (the embedded default).

Where it sits in the loop: check data -> **train** -> evaluate -> promote. What the three
backends share is :mod:`mlops_airflow.operators.training_base`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

import mlops_airflow
from mlops_airflow.constants import TAG_DAG_RUN, TAG_REASON, TRAINING_PARENT_PID_ENV
from mlops_airflow.operators.training_base import ModelTrainingBase, raise_for_exit_code
from mlops_airflow.training.command_line import training_command
from mlops_airflow.utils.task_args import as_date, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

# How long the entrypoint gets to exit after SIGTERM before it is killed.
_TERMINATE_GRACE_SECONDS = 15


class LocalModelTrainingOperator(ModelTrainingBase, FailFastTemplates, BaseOperator):
    """
    Train a model version with the training entrypoint as a local subprocess.

    The embedded default and single-machine installs use this backend; the pod and
    container backends run the same entrypoint and return the same XCom. Parameters:
    :class:`~mlops_airflow.operators.training_base.ModelTrainingBase`.
    """

    template_fields: Sequence[str] = ("window_start", "window_end", "data_report_uri", "reason")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
            return self.training_result(json.loads(Path(result_path).read_text(encoding="utf-8")))

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
