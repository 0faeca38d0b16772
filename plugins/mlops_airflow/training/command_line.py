"""The training entrypoint's command line, as every backend runs it: the argv and the files it reads and writes.

``python -m mlops_airflow.training`` (:mod:`mlops_airflow.training.__main__`) parses this argv;
the local, Docker and Kubernetes training operators build it here, so they run the same thing.
Airflow-free: a trainer image needs only this package.
"""

from __future__ import annotations

import datetime as dt
import sys

from mlops_airflow.constants import TAG_DAG_RUN, TAG_REASON


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
