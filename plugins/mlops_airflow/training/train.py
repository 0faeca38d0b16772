"""Train one model version: read the window, fit, log one MLflow run, register ``challenger``.

Where it sits in the loop: check data -> **train** -> evaluate -> promote.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from mlops_airflow import __version__
from mlops_airflow.constants import (
    CHALLENGER_ALIAS,
    DATA_REPORT_ARTIFACT,
    MODEL_ARTIFACT_PATH,
    PARTITION_KEY,
    REFERENCE_SAMPLE_ARTIFACT,
    TAG_CODE_VERSION,
    TAG_IDEMPOTENCY_KEY,
    TAG_MODEL_SPEC,
    TAG_WINDOW_END,
    TAG_WINDOW_START,
    VALIDATION_SCORES_ARTIFACT,
    VALIDATION_SCORES_MAX_ROWS,
    TrainingExitCode,
)
from mlops_airflow.core.features import FeatureError, prepare_features
from mlops_airflow.core.partitions import read_window
from mlops_airflow.core.payloads import TrainingResult
from mlops_airflow.core.tracking import tracking_server_problem
from mlops_airflow.settings import code_version_override
from mlops_airflow.specs import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# MLflow limits tag values (5000 characters before MLflow 2, 8000 since; by version and store a
# longer one fails the run or is cut silently), and a reason from the trigger form or a drift
# summary has no length limit of its own: cut it here, visibly, at a length every server takes.
TAG_VALUE_MAX_CHARS = 5000
_TRUNCATED = " ... [truncated]"


class TrainingError(Exception):
    """A failure with a known exit code and a message for a person."""

    def __init__(self, exit_code: TrainingExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class TrainingRequest:
    spec: ModelSpec
    window_start: dt.date
    window_end: dt.date
    tracking_uri: str
    idempotency_key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    data_report_uri: str | None = None


def code_version() -> str:
    """``MLOPS_CODE_VERSION`` when the image sets it, else the checkout's git commit, else the package version."""
    explicit = code_version_override()
    if explicit:
        return explicit
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{commit}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def bounded_tag_value(value: str, limit: int = TAG_VALUE_MAX_CHARS) -> str:
    """``value`` unchanged when it fits an MLflow tag, else cut to ``limit`` characters with a marker saying so."""
    if len(value) <= limit:
        return value
    return value[: limit - len(_TRUNCATED)] + _TRUNCATED


def _split_uri(uri: str) -> tuple[str, str, str, str, str]:
    """Scheme (``file`` for a plain path), location, decoded path, query and fragment."""
    parts = urlsplit(uri)
    return (parts.scheme.lower() or "file", parts.netloc.lower(), unquote(parts.path), parts.query, parts.fragment)


def checked_data_report(uri: str, reports_root: str) -> str:
    """Where to read the data check's report: ``uri`` once it is known to lie under ``reports_root``.

    The URI arrives through XCom, which can be forged: only a report under the root the data
    check writes to is read and uploaded to the run. A local path is resolved (``..`` and
    symlinks followed) before the comparison, and the resolved path is what gets read. On
    object storage, another bucket, a ``..`` segment or a query (pyarrow takes an
    ``endpoint_override`` from it) is refused.

    :raises TrainingError: (bad arguments) naming the URI, when it is not under the root.
    """
    scheme, location, path, query, fragment = _split_uri(uri)
    root_scheme, root_location, root_path, root_query, _ = _split_uri(reports_root)

    def refuse(why: str) -> TrainingError:
        return TrainingError(
            TrainingExitCode.BAD_ARGUMENTS, f"--data-report {uri!r} refused: {why}; data check reports are read only from under {reports_root}"
        )

    if fragment or query != root_query:
        raise refuse("it carries a query or fragment that the reports root does not")
    if (scheme, location) != (root_scheme, root_location):
        raise refuse("it is on another file system or bucket")
    if scheme == "file":
        resolved, root = Path(path).resolve(), Path(root_path).resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise refuse(f"it resolves to {resolved}, outside the reports root")
        return str(resolved)
    if {".", ".."} & set(path.split("/")):
        raise refuse("it has a '.' or '..' path segment")
    if not path.startswith(root_path.rstrip("/") + "/"):
        raise refuse("it is outside the reports root")
    return uri


def check_tracking_server(tracking_uri: str, timeout: float = 10.0) -> None:
    """Fail fast with a clear message when an HTTP tracking server does not answer."""
    problem = tracking_server_problem(tracking_uri, timeout)
    if problem:
        raise TrainingError(TrainingExitCode.TRACKING_UNREACHABLE, problem)


def _prepare_frame(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, pd.Series]:
    """The model's features and the integer label; rows without a label are dropped."""
    if spec.target.column not in frame.columns:
        raise TrainingError(TrainingExitCode.BAD_DATA, f"label column {spec.target.column!r} is missing from {spec.data.uri}")
    label = frame[spec.target.column]
    unlabelled = int(label.isna().sum())
    if unlabelled:
        log.warning("Dropping %d rows without a label", unlabelled)
        frame = frame[label.notna()]
        label = label[label.notna()]
    unknown = sorted(set(label.unique()) - set(spec.target.classes))
    if unknown:
        raise TrainingError(TrainingExitCode.BAD_DATA, f"label {spec.target.column!r} has values {unknown[:5]} outside the classes {list(spec.target.classes)}")
    try:
        features = prepare_features(frame, spec)
    except FeatureError as err:
        raise TrainingError(TrainingExitCode.BAD_DATA, f"{spec.data.uri}: {err}") from err
    return features, label.astype("int64")


def _metrics(y_true, probabilities, classes) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    predicted = [classes[i] for i in probabilities.argmax(axis=1)]
    binary = len(classes) == 2
    metrics = {
        "accuracy": accuracy_score(y_true, predicted),
        "log_loss": log_loss(y_true, probabilities, labels=list(classes)),
        "f1": f1_score(y_true, predicted, average="binary" if binary else "macro", pos_label=classes[-1]),
    }
    if len(set(y_true)) == len(classes):
        metrics["roc_auc"] = (
            roc_auc_score(y_true, probabilities[:, 1]) if binary else roc_auc_score(y_true, probabilities, multi_class="ovr", labels=list(classes))
        )
    return {k: float(v) for k, v in metrics.items()}


def _find_previous_result(client, request: TrainingRequest) -> TrainingResult | None:
    """A finished run of the same DAG run and try-independent key whose version is registered."""
    if not request.idempotency_key:
        return None
    experiment = client.get_experiment_by_name(request.spec.name)
    if experiment is None:
        return None
    # Any status: a try killed after registering its version but before ending its run left
    # it RUNNING (or, once MLflow notices, FAILED); its version is the one to reuse.
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_IDEMPOTENCY_KEY}` = '{request.idempotency_key}'",
        order_by=["attributes.start_time DESC"],
    )
    found = None
    for candidate in runs:
        versions = client.search_model_versions(f"name = '{request.spec.registered_model_name}' and run_id = '{candidate.info.run_id}'")
        if versions:
            found = candidate, max(versions, key=lambda v: int(v.version))
            break
    if found is None:
        return None
    run, version = found
    if run.info.status != "FINISHED":
        client.set_terminated(run.info.run_id, "FINISHED")
    client.set_registered_model_alias(request.spec.registered_model_name, CHALLENGER_ALIAS, version.version)
    return TrainingResult(
        run_id=run.info.run_id,
        model_uri=f"models:/{request.spec.registered_model_name}/{version.version}",
        version=str(version.version),
        registered_model_name=request.spec.registered_model_name,
        window_start=request.window_start.isoformat(),
        window_end=request.window_end.isoformat(),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        reused=True,
    )


def train(request: TrainingRequest) -> TrainingResult:
    """Fit the spec's estimator on the window and register it as ``challenger``."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    spec = request.spec
    report = checked_data_report(request.data_report_uri, spec.data.reports_uri) if request.data_report_uri else None
    check_tracking_server(request.tracking_uri)
    mlflow.set_tracking_uri(request.tracking_uri)
    client = MlflowClient(tracking_uri=request.tracking_uri)

    previous = _find_previous_result(client, request)
    if previous is not None:
        log.info("Run %s already trained version %s for %s; reusing it", previous.run_id, previous.version, request.idempotency_key)
        return previous

    window = read_window(spec.data.uri, request.window_start, request.window_end)
    if not window.present_days:
        raise TrainingError(TrainingExitCode.BAD_DATA, f"no partitions under {spec.data.uri} for {request.window_start}..{request.window_end} (end exclusive)")
    if window.missing_days:
        log.warning("Window has no partition for %d days: %s", len(window.missing_days), ", ".join(map(str, window.missing_days)))

    features, label = _prepare_frame(window.frame, spec)
    days = window.frame.loc[features.index, PARTITION_KEY]
    validation_start = request.window_end - dt.timedelta(days=spec.training.validation_days)
    is_validation = (days >= validation_start).to_numpy()
    x_train, y_train = features[~is_validation], label[~is_validation]
    x_val, y_val = features[is_validation], label[is_validation]
    if x_train.empty or x_val.empty:
        raise TrainingError(
            TrainingExitCode.BAD_DATA,
            f"time split at {validation_start} leaves {len(x_train)} training and {len(x_val)} validation rows; both must be non-empty",
        )
    if y_train.nunique() < 2:
        raise TrainingError(TrainingExitCode.BAD_DATA, f"training rows hold only the class {y_train.iloc[0]!r}")

    from mlops_airflow.core.estimators import TRUSTED_TYPES, build_pipeline

    try:
        pipeline = build_pipeline(
            spec.training.estimator.kind,
            spec.training.estimator.params,
            numeric=spec.features.numeric,
            categorical=spec.features.categorical,
            seed=spec.training.seed,
        )
    except TypeError as err:
        raise TrainingError(TrainingExitCode.BAD_ARGUMENTS, f"training.estimator.params: {err}") from err
    log.info("Fitting %s on %d rows (%d validation rows)", spec.training.estimator.kind, len(x_train), len(x_val))
    pipeline.fit(x_train, y_train)
    if spec.training.estimator.kind == "xgboost":
        # Trained on the GPU, served anywhere: scoring machines and model servers rarely have one.
        pipeline.named_steps["estimator"].set_params(device="cpu")
    classes = [int(c) for c in pipeline.classes_]
    validation_probabilities = pipeline.predict_proba(x_val)
    metrics = _metrics(y_val.to_numpy(), validation_probabilities, classes)
    metrics.update(train_rows=float(len(x_train)), validation_rows=float(len(x_val)))

    mlflow.set_experiment(spec.name)
    tags = {
        **{key: bounded_tag_value(value) for key, value in request.tags.items()},
        TAG_CODE_VERSION: code_version(),
        TAG_MODEL_SPEC: spec.name,
        TAG_WINDOW_START: request.window_start.isoformat(),
        TAG_WINDOW_END: request.window_end.isoformat(),
    }
    if request.idempotency_key:
        tags[TAG_IDEMPOTENCY_KEY] = request.idempotency_key
    run_name = f"train-{request.window_end.isoformat()}"
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params(
            {
                "estimator": spec.training.estimator.kind,
                **{f"estimator.{k}": v for k, v in spec.training.estimator.params.items()},
                "seed": spec.training.seed,
                "window_start": request.window_start.isoformat(),
                "window_end": request.window_end.isoformat(),
                "validation_start": validation_start.isoformat(),
                "features.numeric": ",".join(spec.features.numeric),
                "features.categorical": ",".join(spec.features.categorical),
                "missing_days": len(window.missing_days),
            }
        )
        mlflow.log_metrics(metrics)
        _log_dataset(window.frame.loc[features.index], spec, request)
        _log_reference_sample(x_train, spec)
        _log_validation_scores(x_val, y_val, validation_probabilities, classes, spec)
        if report:
            _log_data_report(report)
        if Path(spec.source).is_file():
            mlflow.log_artifact(spec.source, artifact_path="spec")

        example = x_train.head(5)
        import mlflow.sklearn

        model_info = mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT_PATH,
            signature=infer_signature(example, pipeline.predict_proba(example)),
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            # Explicit requirements: inferring them re-loads the model in a subprocess (~10 s).
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
            skops_trusted_types=list(TRUSTED_TYPES[spec.training.estimator.kind]),
        )
        version = mlflow.register_model(model_info.model_uri, spec.registered_model_name, tags={TAG_WINDOW_END: request.window_end.isoformat()})
    client.set_registered_model_alias(spec.registered_model_name, CHALLENGER_ALIAS, version.version)
    log.info("Registered %s version %s as %r", spec.registered_model_name, version.version, CHALLENGER_ALIAS)
    return TrainingResult(
        run_id=run.info.run_id,
        model_uri=f"models:/{spec.registered_model_name}/{version.version}",
        version=str(version.version),
        registered_model_name=spec.registered_model_name,
        window_start=request.window_start.isoformat(),
        window_end=request.window_end.isoformat(),
        metrics=metrics,
    )


def _log_dataset(frame: pd.DataFrame, spec: ModelSpec, request: TrainingRequest) -> None:
    """Dataset lineage: digest, source URI, window and row count, as an MLflow dataset input."""
    import mlflow

    columns = [*spec.features.columns, spec.target.column]
    dataset = mlflow.data.from_pandas(
        frame[columns],
        source=spec.data.uri,
        targets=spec.target.column,
        name=f"{spec.name}-{request.window_start.isoformat()}-{request.window_end.isoformat()}",
    )
    mlflow.log_input(dataset, context="training")
    mlflow.log_params({"dataset.digest": dataset.digest, "dataset.rows": len(frame), "dataset.source": spec.data.uri})


def _log_data_report(uri: str) -> None:
    """The data check's report, beside the model it vetted."""
    import mlflow
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            report = json.loads(stream.read())
    except (OSError, ValueError) as err:
        raise TrainingError(TrainingExitCode.BAD_ARGUMENTS, f"cannot read the data check report {uri}: {err}") from err
    mlflow.log_dict(report, DATA_REPORT_ARTIFACT)
    mlflow.log_metrics({"data_check.rows": report.get("rows", 0), "data_check.rules_failed": report.get("rules_failed", 0)})


def _log_reference_sample(x_train: pd.DataFrame, spec: ModelSpec) -> None:
    """A capped, seeded sample of the training features: drift monitoring compares against it."""
    rows = min(len(x_train), spec.training.reference_sample_rows)
    _log_parquet(x_train.sample(n=rows, random_state=spec.training.seed).reset_index(drop=True), REFERENCE_SAMPLE_ARTIFACT)


def _log_parquet(frame: pd.DataFrame, artifact: str) -> None:
    """``frame`` as the Parquet artifact ``artifact`` (a path in the run's artifacts) of the active run."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(artifact).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact).parent))


def _log_validation_scores(x_val: pd.DataFrame, y_val: pd.Series, probabilities, classes: list[int], spec: ModelSpec) -> None:
    """The validation rows as the model scored them: what the performance monitor compares live outcomes with."""
    import pandas as pd

    scores = pd.DataFrame({"label": y_val.to_numpy()})
    for index, label in enumerate(classes):
        scores[f"probability_{label}"] = probabilities[:, index]
    for column in spec.promotion.segments:
        scores[column] = x_val[column].to_numpy()
    if len(scores) > VALIDATION_SCORES_MAX_ROWS:
        scores = scores.sample(n=VALIDATION_SCORES_MAX_ROWS, random_state=spec.training.seed).reset_index(drop=True)
    _log_parquet(scores, VALIDATION_SCORES_ARTIFACT)


def write_result(result: TrainingResult, path: str | os.PathLike[str]) -> None:
    """Write the XCom result atomically: a reader never sees half a JSON document."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(result.to_json(), encoding="utf-8")
    temporary.replace(path)
