"""The model spec's dataclasses: what a spec holds once parsed, with the limits every field keeps."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_airflow.constants import TrainingBackend

# DNS-1123 label friendly, so `<name>-preview` still fits Kubernetes' 63 characters.
_NAME_PATTERN = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
# What a spec file may be: YAML is parsed before anything is validated, so its size, nesting
# and aliases (which expand a few lines into gigabytes) are limited first.
MAX_SPEC_BYTES = 256 * 1024
MAX_NESTING = 16
# Upper bounds of numeric fields (docs/model-spec.md lists them).
MAX_DAYS = 3650
MAX_BACKFILL_DAYS = 366  # one batch-score run a day: a year of runs is the most a drift may start
MAX_ROWS = 1_000_000_000
MAX_SEED = 2**32 - 1
MAX_INTEGER = 10**15  # any integer a spec holds; larger ones do not even convert to float exactly
DAY_SECONDS = 24 * 3600
WEEK_MINUTES = 7 * 24 * 60
YEAR_HOURS = 365 * 24


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: error messages never carry a whole hostile value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


class ModelSpecError(ValueError):
    """A model spec is invalid; the message names the file and the dotted field path."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")


ESTIMATOR_KINDS = ("hist_gradient_boosting", "random_forest", "logistic_regression", "xgboost")


@dataclass(frozen=True)
class DataSpec:
    """Where the model's partitions live: ``<uri>/dt=YYYY-MM-DD/*.parquet``."""

    uri: str
    timestamp_column: str
    predictions_uri: str
    reports_uri: str


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


@dataclass(frozen=True)
class TargetSpec:
    column: str
    classes: tuple[int, ...]


@dataclass(frozen=True)
class EstimatorSpec:
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeSpec:
    """Resources for the training backend; ``image`` is ignored by the local backend."""

    image: str | None = None
    gpus: int = 0
    cpu: str = "1"
    memory: str = "2Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    runtime_class: str | None = None
    namespace: str = "mlops"
    service_account: str = "mlops-training"
    mlflow_credentials_secret: str | None = "mlflow-pipeline-credentials"  # noqa: S105 - the name of a Kubernetes Secret
    schedule_timeout_seconds: int = 600


@dataclass(frozen=True)
class TrainingSpec:
    backend: TrainingBackend
    window_days: int
    validation_days: int
    estimator: EstimatorSpec
    seed: int
    reference_sample_rows: int
    compute: ComputeSpec
    timeout_minutes: int


COLUMN_DTYPES = ("int", "float", "string", "bool", "timestamp")
ON_FAILURE_ACTIONS = ("fail", "quarantine")


@dataclass(frozen=True)
class ColumnContract:
    """What one column must hold. ``max_null_fraction`` 0 means not nullable."""

    name: str
    dtype: str
    max_null_fraction: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[Any, ...] | None = None
    unique: bool = False
    allow_non_finite: bool = False


@dataclass(frozen=True)
class RowCountContract:
    """Rows per partition: absolute bounds, and bounds relative to the trailing mean of earlier days."""

    minimum: int = 1
    maximum: int | None = None
    min_ratio_to_trailing_mean: float | None = None
    max_ratio_to_trailing_mean: float | None = None
    trailing_days: int = 7


@dataclass(frozen=True)
class DataContract:
    """The data contract of a model's partitions; see :mod:`mlops_airflow.core.contract`."""

    columns: tuple[ColumnContract, ...]
    rows: RowCountContract
    extra_columns: str = "forbid"
    max_delay_hours: float | None = None
    max_duplicate_fraction: float = 0.0
    require_all_partitions: bool = True
    on_failure: str = "fail"

    def column(self, name: str) -> ColumnContract | None:
        return next((c for c in self.columns if c.name == name), None)


METRIC_NAMES = ("roc_auc", "accuracy", "f1", "log_loss", "brier")
LOWER_IS_BETTER = ("log_loss", "brier")
COMPARISONS = ("non_inferiority", "superiority")


@dataclass(frozen=True)
class PromotionSpec:
    """How a challenger earns ``champion``; see :mod:`mlops_airflow.stats.gating`."""

    primary_metric: str = "roc_auc"
    metrics: tuple[str, ...] = ("roc_auc", "accuracy", "f1", "log_loss")
    evaluation_days: int = 7
    minimums: Mapping[str, float] = field(default_factory=dict)
    maximums: Mapping[str, float] = field(default_factory=dict)
    comparison: str = "non_inferiority"
    margin: float = 0.0
    confidence: float = 0.95
    bootstrap_resamples: int = 1000
    seed: int = 42
    segments: tuple[str, ...] = ()
    max_segment_regression: float | None = None
    min_segment_rows: int = 100
    require_approval: bool = False
    approval_timeout_hours: float = 24.0
    four_eyes: bool = False
    pool: str = "mlops_promotion"


SERVING_BACKENDS = ("local", "kubernetes", "docker")


@dataclass(frozen=True)
class SmokeSpec:
    """The idle colour's test before it gets traffic."""

    golden_rows: int = 20
    burst_requests: int = 50
    max_p95_ms: float = 500.0
    max_error_rate: float = 0.0
    tolerance: float = 1e-6
    concurrency: int = 8  # the burst's requests in flight at once: p95 is judged under concurrency


@dataclass(frozen=True)
class CapacitySpec:
    """What one colour's model server takes on (every backend): worker processes, and per worker its limits.

    Past ``max_pending`` requests waiting or running in a worker, or ``max_wait_seconds`` of waiting,
    a request is answered 503 with ``Retry-After`` at once instead of queueing.
    """

    workers: int | None = None  # None: one per CPU of the machine or container the server runs on
    max_pending: int = 64
    max_batch_rows: int = 4096  # concurrent requests are scored together, up to this many rows per model call
    max_wait_seconds: float = 1.0


@dataclass(frozen=True)
class InferenceLogSpec:
    """Every live request and answer, kept as daily Parquet partitions (``<uri>/dt=YYYY-MM-DD/``)."""

    uri: str | None  # None: not logged (sample_rate 0)
    sample_rate: float = 1.0  # the share of requests kept
    flush_seconds: float = 2.0  # each worker writes what it holds this often (and on a graceful stop)


RELEASE_STRATEGIES = ("blue_green", "canary", "shadow", "ab")


@dataclass(frozen=True)
class CanarySpec:
    """Live traffic moves to the new colour in steps; each step is analysed on the inference log before the next.

    A step fails when the new colour's error rate, its p95 latency, or the shift of its predictions
    against the old colour's over the same period (the KS statistic) passes its limit; it is
    inconclusive with fewer than ``min_requests`` answers from the new colour.
    """

    steps: tuple[int, ...] = (10, 50)  # percent of live traffic on the new colour; 100 follows the last step
    step_seconds: int = 300  # how long each step is held before its analysis
    max_error_rate: float = 0.01  # 5xx answers (refusals under overload included) / answers
    max_p95_ms: float = 500.0
    max_output_shift: float = 0.2  # KS statistic D between the two colours' scores in the step
    min_requests: int = 50


@dataclass(frozen=True)
class ShadowSpec:
    """The new colour scores the live colour's logged requests before it gets any traffic (replay; it answers no client)."""

    window_minutes: int = 60  # the logged requests of the last this many minutes
    max_requests: int = 2000  # at most this many, the newest
    concurrency: int = 4
    min_requests: int = 50  # fewer logged: inconclusive
    min_agreement: float = 0.9  # share of requests whose predicted class (or value within tolerance) is the live colour's
    max_error_rate: float = 0.0
    max_p95_ms: float = 500.0


@dataclass(frozen=True)
class ABSpec:
    """A fixed, sticky split: each client keeps the version it was first given (a cookie), for the test's duration.

    Judged on health (errors and latency, as a canary step) with the observed split; which version
    does better needs the outcomes (labels), so the verdict goes to a person with the figures.
    """

    percent: int = 50  # of new clients given the new version
    cookie: str = "mlops_variant"
    duration_minutes: float = 60.0
    max_error_rate: float = 0.01
    max_p95_ms: float = 500.0
    min_requests: int = 100


@dataclass(frozen=True)
class ReleaseSpec:
    strategy: str = "blue_green"
    canary: CanarySpec = field(default_factory=CanarySpec)
    shadow: ShadowSpec = field(default_factory=ShadowSpec)
    ab: ABSpec = field(default_factory=ABSpec)
    decision_timeout_hours: float = 24.0  # an inconclusive analysis waits this long for a person; no answer: rolled back


@dataclass(frozen=True)
class DockerServingSpec:
    """Serving on one Docker host (the compose stack): scoring containers behind a Caddy router container."""

    image: str = "mlops-airflow:local"  # an image with MLflow, this package (the model server) and the model's dependencies
    network: str = "mlops-serving"  # the Docker network the containers, the router and the workers share
    base_url: str = "unix://var/run/docker.sock"
    # The router's admin API: unix:/path (a socket only the router and the workers mount) or http(s)://host:port.
    router_admin_url: str = "unix:/run/serving-router/admin.sock"
    router_host: str = "serving-router"
    live_port: int = 8000  # this model's live port on the router (one per model)
    container_port: int = 8080


@dataclass(frozen=True)
class LocalServingSpec:
    """This model's ports on the embedded stack: the live URL ``http://127.0.0.1:<live_port>/invocations`` and the two colours.

    Every model has its own three: a spec that sets ``live_port`` only gets ``live_port + 1`` and
    ``+ 2`` for blue and green; a spec that sets none gets ``MLOPS_SERVING_*_PORT`` or 8500-8502.
    """

    live_port: int = 8500
    blue_port: int = 8501
    green_port: int = 8502
    explicit: bool = False  # the spec sets its ports (a clash with defaulted ones refuses those)

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.live_port, self.blue_port, self.green_port)


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway API ``Gateway`` whose ``HTTPRoute`` carries a model's live traffic on Kubernetes (and a canary's weights)."""

    name: str
    namespace: str | None = None  # None: the serving namespace
    section_name: str | None = None  # one listener of the Gateway; None: every listener that allows the route


@dataclass(frozen=True)
class ServingSpec:
    backend: str = "local"
    drain_seconds: int = 300
    ready_timeout_seconds: int = 600
    smoke: SmokeSpec = field(default_factory=SmokeSpec)
    namespace: str = "mlops"
    replicas: int = 2
    port: int = 80
    kubernetes_conn_id: str = "kubernetes_default"
    gateway: GatewayRef | None = None  # Kubernetes: live traffic through an HTTPRoute of this Gateway (canary weights); None: the Service only
    docker: DockerServingSpec = field(default_factory=lambda: DockerServingSpec())
    local: LocalServingSpec = field(default_factory=LocalServingSpec)
    capacity: CapacitySpec = field(default_factory=CapacitySpec)
    inference_log: InferenceLogSpec = field(default_factory=lambda: InferenceLogSpec(uri=None))
    release: ReleaseSpec = field(default_factory=ReleaseSpec)


@dataclass(frozen=True)
class DriftSpec:
    """How ``drift_monitor_<model>`` decides that production data has drifted."""

    features: tuple[str, ...] = ()  # empty: every feature of the spec
    window_days: int = 1  # the current window: these days, ending the day before the run's day
    lookback_days: int = 7  # how far back the drift onset is looked for
    alpha: float = 0.05  # Benjamini-Hochberg false discovery rate across features
    min_effect: float = 0.1  # KS D (numeric) or total variation distance (categorical)
    min_samples: int = 500  # fewer usable values in either sample: the feature is not tested
    check_interval_minutes: int = 15  # how often the deferred sensor looks for a new partition
    watch_interval_seconds: int = 5  # how often the triggerer lists data.uri; a partition landing starts the monitor at once (0: the schedule only)
    timeout_minutes: int = 50  # no drift by then: the run ends skipped (0: check once, never wait)
    cooldown_hours: float = 24.0  # no new trigger for an overlapping window this soon after the last
    report: bool = True  # an Evidently HTML report of the drifted window, logged to MLflow
    max_backfill_days: int = 31  # the longest re-scoring backfill a drift may start (at least lookback_days)
    multivariate: bool = True  # the domain classifier test beside the per-feature tests (stats/domain_classifier.py)


HIGHER_IS_BETTER = tuple(m for m in METRIC_NAMES if m not in LOWER_IS_BETTER)


@dataclass(frozen=True)
class PerformanceSpec:
    """How ``performance_monitor_<model>`` judges the champion on outcomes that arrive late (labels).

    Labels land in their own daily partitions, ``<labels_uri>/dt=YYYY-MM-DD/*.parquet``, the
    partition being the day of the rows they label (not the day they arrived): the ``key`` column
    and the target column. A day's labels are expected ``label_delay_days`` after it.
    """

    labels_uri: str
    key: str  # joins a day's batch predictions with its labels
    label_delay_days: int = 3
    window_days: int = 7  # realized performance over the newest this many days whose labels are due
    metric: str = "roc_auc"  # a metric where higher is better
    floor: float | None = None  # decayed when even the bootstrap's upper bound is below it
    max_drop: float | None = 0.05  # decayed when the drop below the promotion-time figure exceeds this, at `confidence`
    confidence: float = 0.95
    bootstrap_resamples: int = 1000
    min_labelled_rows: int = 500  # fewer labelled predictions of the champion in the window: no verdict
    cooldown_hours: float = 72.0  # no new retrain on decay this soon after the last
    retrain: bool = True  # a decay triggers retrain_<model>; false: it is recorded and alerted only


@dataclass(frozen=True)
class ScheduleSpec:
    start_date: dt.date
    retrain: str | None
    drift_monitor: str | None
    batch_score: str | None
    performance_monitor: str | None = "@daily"
    # Deadline Alerts: a run not finished this long after it was queued is alerted (None, the default: no deadline).
    # Off unless set: Airflow 3.3's dag.test() fails at the end of a successful run of a DAG with a Deadline Alert.
    retrain_deadline_minutes: float | None = None  # plus the approval's timeout and the release's waits
    rollback_deadline_minutes: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model, as described by its YAML file."""

    name: str
    description: str
    owner: str
    tags: tuple[str, ...]
    data: DataSpec
    features: FeatureSpec
    target: TargetSpec
    training: TrainingSpec
    schedules: ScheduleSpec
    contract: DataContract
    promotion: PromotionSpec
    serving: ServingSpec
    source: str
    drift: DriftSpec = field(default_factory=DriftSpec)
    performance: PerformanceSpec | None = None  # None: no performance_monitor DAG

    @property
    def registered_model_name(self) -> str:
        return self.name
