"""``python -m mlops_airflow.training``: see :mod:`mlops_airflow.training.train`.

The tracking server comes from ``MLFLOW_TRACKING_URI`` and its credentials from
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (environment, never argv,
so they stay out of process listings and pod specs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

from mlops_airflow.constants import TRAINING_PARENT_PID_ENV, TrainingExitCode

DEFAULT_RESULT_PATH = "/airflow/xcom/return.json"


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def _tag(value: str) -> tuple[str, str]:
    key, sep, tag_value = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, tag_value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlops_airflow.training", description="Train one model version and register it as challenger.")
    parser.add_argument("--spec", required=True, help="path of the model spec YAML, or env:NAME to read the YAML from an environment variable")
    parser.add_argument("--window-start", required=True, type=_date, help="first day of the training window")
    parser.add_argument("--window-end", required=True, type=_date, help="day after the last day of the window (exclusive)")
    parser.add_argument("--result-path", default=DEFAULT_RESULT_PATH, help=f"where the JSON result goes (default {DEFAULT_RESULT_PATH})")
    parser.add_argument("--idempotency-key", help="a retried task with the same key reuses the finished run instead of training again")
    parser.add_argument("--data-report", help="URI of the data check's JSON report, logged to the run as data_check/report.json")
    parser.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE", help="an MLflow run tag (repeatable)")
    args = parser.parse_args(argv)
    if args.window_end <= args.window_start:
        parser.error(f"--window-end ({args.window_end}) must be after --window-start ({args.window_start})")
    return args


EXIT_PARENT_GONE = 143


def exit_with_parent(parent_pid: int, poll: float = 0.2) -> None:
    """End this process when ``parent_pid`` is no longer its parent (the task process was killed).

    A local training subprocess must not outlive its task: a killed task's retry trains again,
    and an orphan still running would register a second version.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll)
        os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    if os.environ.get(TRAINING_PARENT_PID_ENV):
        exit_with_parent(int(os.environ[TRAINING_PARENT_PID_ENV]))

    from mlops_airflow.specs import ModelSpecError, load_spec, load_spec_text
    from mlops_airflow.training.train import TrainingError, TrainingRequest, train, write_result

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        print("error: MLFLOW_TRACKING_URI is not set; point it at the MLflow tracking server", file=sys.stderr)
        return TrainingExitCode.BAD_ARGUMENTS
    try:
        if args.spec.startswith("env:"):
            variable = args.spec.removeprefix("env:")
            if not os.environ.get(variable):
                print(f"error: --spec {args.spec}: environment variable {variable} is empty or not set", file=sys.stderr)
                return TrainingExitCode.BAD_ARGUMENTS
            spec = load_spec_text(os.environ[variable], source=args.spec)
        else:
            spec = load_spec(args.spec)
    except ModelSpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return TrainingExitCode.BAD_ARGUMENTS
    request = TrainingRequest(
        spec=spec,
        window_start=args.window_start,
        window_end=args.window_end,
        tracking_uri=tracking_uri,
        idempotency_key=args.idempotency_key,
        tags=dict(args.tag),
        data_report_uri=args.data_report,
    )
    try:
        result = train(request)
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    write_result(result, args.result_path)
    print(result.to_json())
    return TrainingExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
