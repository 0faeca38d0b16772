"""Names shared by every part of the loop: aliases, XCom keys, tags, exit codes."""

from __future__ import annotations

import enum

# Registry aliases (MLflow stages are deprecated; aliases are the contract).
CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"
PREVIOUS_CHAMPION_ALIAS = "previous_champion"

# DAG id prefixes; each model spec yields one DAG of each kind.
RETRAIN_DAG_PREFIX = "retrain_"
DRIFT_MONITOR_DAG_PREFIX = "drift_monitor_"
BATCH_SCORE_DAG_PREFIX = "batch_score_"
ROLLBACK_DAG_PREFIX = "rollback_"

# Tags written on MLflow runs and model versions.
TAG_IDEMPOTENCY_KEY = "mlops.idempotency_key"
TAG_CODE_VERSION = "mlops.code_version"
TAG_MODEL_SPEC = "mlops.model_spec"
TAG_WINDOW_START = "mlops.window_start"
TAG_WINDOW_END = "mlops.window_end"
TAG_DAG_RUN = "mlops.dag_run"
TAG_REASON = "mlops.reason"

# Artifact paths inside a training run.
MODEL_ARTIFACT_PATH = "model"
REFERENCE_SAMPLE_ARTIFACT = "reference/features.parquet"
DATA_REPORT_ARTIFACT = "data_check/report.json"

# Partition folder naming: <data uri>/dt=YYYY-MM-DD/*.parquet
PARTITION_KEY = "dt"
PARTITION_DATE_FORMAT = "%Y-%m-%d"

DEFAULT_MLFLOW_CONN_ID = "mlflow_default"


class TrainingBackend(enum.StrEnum):
    """Where the training entrypoint runs."""

    LOCAL = "local"
    KUBERNETES = "kubernetes"
    DOCKER = "docker"


class TrainingExitCode(enum.IntEnum):
    """Exit codes of ``python -m mlops_airflow.training``; the operator maps them to retry decisions."""

    OK = 0
    FAILED = 1
    BAD_ARGUMENTS = 2
    BAD_DATA = 3
    TRACKING_UNREACHABLE = 4
