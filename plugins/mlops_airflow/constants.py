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
PERFORMANCE_MONITOR_DAG_PREFIX = "performance_monitor_"

# Tags written on MLflow runs and model versions.
TAG_IDEMPOTENCY_KEY = "mlops.idempotency_key"
TAG_CODE_VERSION = "mlops.code_version"
TAG_MODEL_SPEC = "mlops.model_spec"
TAG_WINDOW_START = "mlops.window_start"
TAG_WINDOW_END = "mlops.window_end"
TAG_DAG_RUN = "mlops.dag_run"
TAG_REASON = "mlops.reason"

# Promotion decisions, recorded as model version tags (and a JSON artifact on the version's run).
TAG_DECISION = "mlops.decision"
TAG_DECISION_REASONS = "mlops.decision.reasons"
TAG_DECISION_GATES = "mlops.decision.gates"
TAG_DECISION_WINDOW = "mlops.decision.window"
TAG_DECISION_DAG_RUN = "mlops.decision.dag_run"
TAG_DECISION_COMPARED_WITH = "mlops.decision.compared_with"
TAG_DECISION_PREVIOUS_CHAMPION = "mlops.decision.previous_champion"
TAG_DECISION_BY = "mlops.decision.by"
TAG_DECISION_AT = "mlops.decision.at"
TAG_DECISION_FORCED = "mlops.decision.forced"
TAG_DECISION_SEAL = "mlops.decision.seal"
DECISION_ARTIFACT_DIR = "promotion"

# Artifact paths inside a training run.
MODEL_ARTIFACT_PATH = "model"
REFERENCE_SAMPLE_ARTIFACT = "reference/features.parquet"
# The champion's validation rows as it scored them (label, probability_<class>, the promotion's segments):
# the performance monitor's baseline, its score calibration and its reference outputs.
VALIDATION_SCORES_ARTIFACT = "reference/validation_scores.parquet"
VALIDATION_SCORES_MAX_ROWS = 200_000
DATA_REPORT_ARTIFACT = "data_check/report.json"

# Partition folder naming: <data uri>/dt=YYYY-MM-DD/*.parquet
PARTITION_KEY = "dt"
PARTITION_DATE_FORMAT = "%Y-%m-%d"

DEFAULT_MLFLOW_CONN_ID = "mlflow_default"
# An HTTP connection to Airflow's own REST API (host with scheme and port, login, password):
# the backfill after a drift-triggered release, and the promotion's read of the approval record.
DEFAULT_AIRFLOW_API_CONN_ID = "airflow_api"

# A local training subprocess ends itself when this process (its task) is gone.
TRAINING_PARENT_PID_ENV = "MLOPS_TRAINING_PARENT_PID"


# The approval task's option that approves a promotion; any other answer, or none, is a no.
APPROVE_OPTION = "Approve"


class Recommendation(enum.StrEnum):
    """What an evaluation's gates propose; the promotion task decides (a :class:`Decision`)."""

    PROMOTE = "promote"
    REJECT = "reject"


class Decision(enum.StrEnum):
    """The value of the ``mlops.decision`` version tag."""

    PROMOTING = "promoting"  # aliases are moving; seen only if the promotion died half-way
    PROMOTED = "promoted"
    REJECTED = "rejected"
    INVALID = "invalid"  # the evaluation could not be computed
    FAILED = "failed"  # the alias move failed and was undone


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


# Drift and performance: the registered model tags that remember the last retrain each monitor
# triggered (the cooldowns), and where their reports go on the champion's run.
TAG_DRIFT_LAST_TRIGGER = "mlops.drift.last_trigger"
TAG_PERFORMANCE_LAST_TRIGGER = "mlops.performance.last_trigger"
DRIFT_ARTIFACT_DIR = "drift"
PERFORMANCE_ARTIFACT_DIR = "performance"
DRIFT_RUN_ID_PREFIX = "drift"
