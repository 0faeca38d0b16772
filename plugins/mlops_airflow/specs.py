"""ModelSpec: load and validate ``include/models/<model>.yaml``.

A model is described once; every DAG, operator and the training entrypoint read the same
spec. Loading is cheap (YAML only) because DAG files call it at parse time. Every error
names the file and the dotted path of the offending field.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops_airflow.constants import TrainingBackend

# DNS-1123 label friendly, so `<name>-preview` still fits Kubernetes' 63 characters.
_NAME_PATTERN = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_CRON_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")
_URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# ${VAR} may name these variables only: a spec is serialized into every DAG, so it must not
# be able to pull any other value of a worker's environment into it.
ENV_ALLOWED = re.compile(r"MLOPS_[A-Z0-9_]+")
# Jinja syntax: a spec's strings reach templated operator fields, where it would be rendered.
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")
# What a spec file may be: YAML is parsed before anything is validated, so its size, nesting
# and aliases (which expand a few lines into gigabytes) are limited first.
MAX_SPEC_BYTES = 256 * 1024
MAX_NESTING = 16
# Upper bounds of numeric fields (the README's spec table lists them).
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
    """The data contract of a model's partitions; see :mod:`mlops_airflow.stats.contract`."""

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


LOCAL_PORT_ENV = {"live_port": "MLOPS_SERVING_LIVE_PORT", "blue_port": "MLOPS_SERVING_BLUE_PORT", "green_port": "MLOPS_SERVING_GREEN_PORT"}


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
class ServingSpec:
    backend: str = "local"
    drain_seconds: int = 300
    ready_timeout_seconds: int = 600
    smoke: SmokeSpec = field(default_factory=SmokeSpec)
    namespace: str = "mlops"
    replicas: int = 2
    port: int = 80
    kubernetes_conn_id: str = "kubernetes_default"
    docker: DockerServingSpec = field(default_factory=lambda: DockerServingSpec())
    local: LocalServingSpec = field(default_factory=LocalServingSpec)


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
    timeout_minutes: int = 50  # no drift by then: the run ends skipped (0: check once, never wait)
    cooldown_hours: float = 24.0  # no new trigger for an overlapping window this soon after the last
    report: bool = True  # an Evidently HTML report of the drifted window, logged to MLflow
    max_backfill_days: int = 31  # the longest re-scoring backfill a drift may start (at least lookback_days)


@dataclass(frozen=True)
class ScheduleSpec:
    start_date: dt.date
    retrain: str | None
    drift_monitor: str | None
    batch_score: str | None


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

    @property
    def registered_model_name(self) -> str:
        return self.name


class _Section:
    """Reads one mapping of a spec, remembering its dotted path for error messages."""

    def __init__(self, source: str, path: str, raw: Any) -> None:
        self.source = source
        self.path = path
        if not isinstance(raw, Mapping):
            self.fail("", f"must be a mapping, got {type(raw).__name__}")
        self.raw = raw
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> None:
        where = ".".join(p for p in (self.path, key) if p) or "<top level>"
        raise ModelSpecError(self.source, where, problem)

    def _get(self, key: str, default: Any, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            if required:
                self.fail(key, "is required")
            return default
        return self.raw[key]

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.fail(key, f"must be a non-empty string, got {shown(value)}")
        return value

    def integer(self, key: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {shown(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be >= {minimum}, got {shown(value)}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be <= {maximum}, got {shown(value)}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str:
        choices = tuple(choices)
        value = self.string(key, default, required=default is None)
        if value not in choices:
            self.fail(key, f"must be one of {list(choices)}, got {shown(value)}")
        return value

    def number(self, key: str, default: float | None = None, *, minimum: float | None = None, maximum: float | None = None) -> Any:
        value = self._get(key, default, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value}")
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            self.fail(key, f"must be within [{minimum}, {maximum}], got {shown(value)}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.fail(key, f"must be within [{minimum}, {maximum}], got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {shown(value)}")
        return value

    def string_list(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self._get(key, [], required)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"must be a list of strings, got {shown(value)}")
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            self.fail(key, f"lists {duplicates} more than once")
        return tuple(value)

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._get(key, {}, False)
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a mapping, got {type(value).__name__}")
        return dict(value)

    def section(self, key: str, *, required: bool = True) -> _Section:
        raw = self._get(key, {}, required)
        return _Section(self.source, ".".join(p for p in (self.path, key) if p), raw)

    def finish(self) -> None:
        unknown = sorted(map(str, set(self.raw) - self.seen))
        if unknown:
            self.fail(shown(unknown[0], 40).strip("'"), f"unknown field; expected one of {sorted(self.seen)}")


def expand_env(value: str, *, source: str, field_path: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without default is an error."""
    environ = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if not ENV_ALLOWED.fullmatch(name):
            raise ModelSpecError(source, field_path, f"${{{name}}}: only variables named MLOPS_* may be used in a spec")
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        raise ModelSpecError(source, field_path, f"environment variable {name} is not set and has no default")

    return _ENV_PATTERN.sub(substitute, value)


def normalise_uri(value: str) -> str:
    """A plain path becomes an absolute ``file://`` URI; URIs pass through unchanged."""
    if _URI_SCHEME.match(value):
        return value.rstrip("/")
    return "file://" + str(Path(value).expanduser().resolve())


def _uri(section: _Section, key: str, default: str | None = None) -> str:
    raw = section.string(key, default, required=default is None)
    expanded = expand_env(raw, source=section.source, field_path=f"{section.path}.{key}")
    return normalise_uri(expanded)


def _cron(section: _Section, key: str, default: str | None) -> str | None:
    if key in section.raw and section.raw[key] is None:
        section.seen.add(key)
        return None  # an explicit null turns the schedule off
    value = section._get(key, default, False)
    if not isinstance(value, str):
        section.fail(key, f"must be a cron expression, a preset such as '@daily', or null; got {shown(value)}")
    if value.startswith("@"):
        if value not in _CRON_PRESETS:
            section.fail(key, f"must be a cron expression or one of {list(_CRON_PRESETS)}; got {shown(value)}")
    else:
        from croniter import croniter  # light, and only needed for non-preset schedules

        if not croniter.is_valid(value):
            section.fail(key, f"is not a valid cron expression: {shown(value)}")
    return value


def parse_spec(raw: Any, *, source: str) -> ModelSpec:
    """Validate one spec document and build a :class:`ModelSpec`."""
    _refuse_templates(raw, source)
    top = _Section(source, "", raw)
    name = top.string("name", required=True)
    if not _NAME_PATTERN.fullmatch(name):
        top.fail("name", f"must be lowercase letters, digits and '-', start with a letter, at most 40 characters; got {shown(name)}")

    data_section = top.section("data")
    data_uri = _uri(data_section, "uri")
    data = DataSpec(
        uri=data_uri,
        timestamp_column=data_section.string("timestamp_column", required=True),
        predictions_uri=_uri(data_section, "predictions_uri"),
        # Reports sit beside the partitions unless told otherwise; readers skip "_" folders.
        reports_uri=_uri(data_section, "reports_uri") if data_section.raw.get("reports_uri") else f"{data_uri}/_reports",
    )
    data_section.finish()

    features_section = top.section("features")
    features = FeatureSpec(
        numeric=features_section.string_list("numeric"),
        categorical=features_section.string_list("categorical"),
    )
    if not features.columns:
        features_section.fail("", "must list at least one numeric or categorical column")
    overlap = sorted(set(features.numeric) & set(features.categorical))
    if overlap:
        features_section.fail("categorical", f"columns {overlap} are also listed as numeric")
    features_section.finish()

    target_section = top.section("target")
    target_column = target_section.string("column", required=True)
    classes = target_section._get("classes", [0, 1], False)
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        target_section.fail("classes", f"must be a list of at least two integer class labels, got {shown(classes)}")
    if len(set(classes)) != len(classes):
        target_section.fail("classes", f"lists a class more than once: {shown(classes)}")
    target = TargetSpec(column=target_column, classes=tuple(classes))
    target_section.finish()

    reserved = {target.column: "target.column", data.timestamp_column: "data.timestamp_column"}
    for column, owner in reserved.items():
        if column in features.columns:
            features_section.fail("", f"column {shown(column)} is the {owner} and cannot also be a feature")

    training = _parse_training(top.section("training"))
    schedules = _parse_schedules(top.section("schedules", required=False))
    contract = _parse_contract(top.section("contract"))
    promotion = _parse_promotion(top.section("promotion", required=False), training, features)
    serving = _parse_serving(top.section("serving", required=False))
    drift = _parse_drift(top.section("drift", required=False), features)
    required = (*features.columns, target.column, data.timestamp_column)
    undeclared = [c for c in required if contract.column(c) is None]
    if undeclared:
        raise ModelSpecError(source, "contract.columns", f"must declare every feature, the target and the timestamp; missing {undeclared}")
    for column in features.numeric:
        if contract.column(column).dtype not in ("int", "float"):
            raise ModelSpecError(
                source, f"contract.columns.{column}.dtype", f"must be int or float for a numeric feature, got {contract.column(column).dtype!r}"
            )
    for column in features.categorical:
        if contract.column(column).dtype not in ("string", "int", "bool"):
            raise ModelSpecError(
                source, f"contract.columns.{column}.dtype", f"must be string, int or bool for a categorical feature, got {contract.column(column).dtype!r}"
            )
    if contract.column(target.column).dtype not in ("int", "bool"):
        raise ModelSpecError(source, f"contract.columns.{target.column}.dtype", "must be int or bool for target.column (class labels are integers)")
    if contract.column(data.timestamp_column).dtype != "timestamp":
        raise ModelSpecError(source, f"contract.columns.{data.timestamp_column}.dtype", "must be 'timestamp' for data.timestamp_column")

    spec = ModelSpec(
        name=name,
        description=top.string("description") or "",
        owner=top.string("owner", default="ml-platform"),
        tags=top.string_list("tags"),
        data=data,
        features=features,
        target=target,
        training=training,
        schedules=schedules,
        contract=contract,
        promotion=promotion,
        serving=serving,
        drift=drift,
        source=source,
    )
    top.finish()
    return spec


def _parse_training(section: _Section) -> TrainingSpec:
    backend = section.choice("backend", [b.value for b in TrainingBackend], default=TrainingBackend.LOCAL.value)
    override = os.environ.get("MLOPS_TRAINING_BACKEND")
    if override:
        if override not in {b.value for b in TrainingBackend}:
            raise ModelSpecError(section.source, "training.backend", f"MLOPS_TRAINING_BACKEND={shown(override)} is not a known backend")
        backend = override

    estimator_section = section.section("estimator")
    estimator = EstimatorSpec(
        kind=estimator_section.choice("kind", ESTIMATOR_KINDS),
        params=estimator_section.mapping("params"),
    )
    estimator_section.finish()

    compute_section = section.section("compute", required=False)
    tolerations = compute_section._get("tolerations", [], False)
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        compute_section.fail("tolerations", "must be a list of Kubernetes toleration mappings")
    compute = ComputeSpec(
        image=compute_section.string("image"),
        gpus=compute_section.integer("gpus", 0, minimum=0, maximum=16),
        cpu=str(compute_section._get("cpu", "1", False)),
        memory=compute_section.string("memory", "2Gi"),
        node_selector={str(k): str(v) for k, v in compute_section.mapping("node_selector").items()},
        tolerations=tuple(dict(t) for t in tolerations),
        runtime_class=compute_section.string("runtime_class"),
        namespace=compute_section.string("namespace", "mlops"),
        service_account=compute_section.string("service_account", "mlops-training"),
        mlflow_credentials_secret=compute_section.string("mlflow_credentials_secret", "mlflow-pipeline-credentials"),
        schedule_timeout_seconds=compute_section.integer("schedule_timeout_seconds", 600, minimum=10, maximum=DAY_SECONDS),
    )
    compute_section.finish()
    if backend != TrainingBackend.LOCAL.value and not compute.image:
        compute_section.fail("image", f"is required for the {shown(backend)} training backend")

    window_days = section.integer("window_days", 28, minimum=2, maximum=MAX_DAYS)
    validation_days = section.integer("validation_days", 7, minimum=1, maximum=MAX_DAYS)
    if validation_days >= window_days:
        section.fail("validation_days", f"must be smaller than window_days ({window_days}), got {validation_days}")
    spec = TrainingSpec(
        backend=TrainingBackend(backend),
        window_days=window_days,
        validation_days=validation_days,
        estimator=estimator,
        seed=section.integer("seed", 42, minimum=0, maximum=MAX_SEED),
        reference_sample_rows=section.integer("reference_sample_rows", 5000, minimum=100, maximum=1_000_000),
        compute=compute,
        timeout_minutes=section.integer("timeout_minutes", 60, minimum=1, maximum=WEEK_MINUTES),
    )
    section.finish()
    return spec


def _parse_column(section: _Section, name: str) -> ColumnContract:
    dtype = section.choice("dtype", COLUMN_DTYPES)
    nullable = section.boolean("nullable", False)
    max_null_fraction = section.number("max_null_fraction", None, minimum=0.0, maximum=1.0)
    if max_null_fraction is not None and not nullable and "nullable" in section.raw:
        section.fail("max_null_fraction", "contradicts nullable: false")
    if max_null_fraction is None:
        max_null_fraction = 1.0 if nullable else 0.0
    minimum, maximum = section.number("min"), section.number("max")
    if (minimum is not None or maximum is not None) and dtype not in ("int", "float"):
        section.fail("min" if minimum is not None else "max", f"bounds apply to int and float columns, not {dtype}")
    if minimum is not None and maximum is not None and minimum > maximum:
        section.fail("min", f"({minimum}) is larger than max ({maximum})")
    allowed = section._get("allowed", None, False)
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed:
            section.fail("allowed", f"must be a non-empty list, got {shown(allowed)}")
        kinds = {"string": str, "int": int, "bool": bool}
        if dtype not in kinds or not all(isinstance(v, kinds[dtype]) and (dtype == "bool" or not isinstance(v, bool)) for v in allowed):
            section.fail("allowed", f"must list {dtype} values (allowed values apply to string, int and bool columns)")
        allowed = tuple(allowed)
    column = ColumnContract(
        name=name,
        dtype=dtype,
        max_null_fraction=float(max_null_fraction),
        minimum=minimum,
        maximum=maximum,
        allowed=allowed,
        unique=section.boolean("unique", False),
        allow_non_finite=section.boolean("allow_non_finite", False),
    )
    section.finish()
    return column


def _parse_contract(section: _Section) -> DataContract:
    columns_section = section.section("columns")
    if not columns_section.raw:
        columns_section.fail("", "must declare at least one column")
    columns = tuple(_parse_column(columns_section.section(str(name)), str(name)) for name in columns_section.raw)
    columns_section.finish()

    rows_section = section.section("rows", required=False)
    rows = RowCountContract(
        minimum=rows_section.integer("min_per_partition", 1, minimum=0, maximum=MAX_ROWS),
        maximum=rows_section.integer("max_per_partition", None, minimum=1, maximum=MAX_ROWS) if rows_section.raw.get("max_per_partition") is not None else None,
        min_ratio_to_trailing_mean=rows_section.number("min_ratio_to_trailing_mean", None, minimum=0.0, maximum=1000.0),
        max_ratio_to_trailing_mean=rows_section.number("max_ratio_to_trailing_mean", None, minimum=0.0, maximum=1000.0),
        trailing_days=rows_section.integer("trailing_days", 7, minimum=1, maximum=MAX_DAYS),
    )
    if rows.maximum is not None and rows.maximum < rows.minimum:
        rows_section.fail("max_per_partition", f"({rows.maximum}) is smaller than min_per_partition ({rows.minimum})")
    rows_section.finish()

    contract = DataContract(
        columns=columns,
        rows=rows,
        extra_columns=section.choice("extra_columns", ("forbid", "allow"), default="forbid"),
        max_delay_hours=section.number("max_delay_hours", None, minimum=0.0, maximum=YEAR_HOURS),
        max_duplicate_fraction=float(section.number("max_duplicate_fraction", 0.0, minimum=0.0, maximum=1.0)),
        require_all_partitions=section.boolean("require_all_partitions", True),
        on_failure=section.choice("on_failure", ON_FAILURE_ACTIONS, default="fail"),
    )
    section.finish()
    return contract


def _metric_list(section: _Section, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    names = section.string_list(key) if key in section.raw else default
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        section.fail(key, f"unknown metrics {unknown}; known: {list(METRIC_NAMES)}")
    return names


def _thresholds(section: _Section, key: str, *, lower_is_better: bool) -> dict[str, float]:
    raw = section.mapping(key)
    for name, value in raw.items():
        if name not in METRIC_NAMES:
            section.fail(f"{key}.{name}", f"unknown metric; known: {list(METRIC_NAMES)}")
        if (name in LOWER_IS_BETTER) != lower_is_better:
            better, other = ("higher", "minimums") if lower_is_better else ("lower", "maximums")
            section.fail(f"{key}.{name}", f"{better} is better for {name}: give its threshold under {section.path}.{other}")
        if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > MAX_INTEGER or not math.isfinite(value):
            section.fail(f"{key}.{name}", f"must be a finite number, got {shown(value)}")
    return {str(k): float(v) for k, v in raw.items()}


def _parse_promotion(section: _Section, training: TrainingSpec, features: FeatureSpec) -> PromotionSpec:
    defaults = PromotionSpec()
    primary = section.choice("primary_metric", METRIC_NAMES, default=defaults.primary_metric)
    metrics = _metric_list(section, "metrics", defaults.metrics)
    minimums = _thresholds(section, "minimums", lower_is_better=False)
    maximums = _thresholds(section, "maximums", lower_is_better=True)
    metrics = tuple(dict.fromkeys([primary, *metrics, *minimums, *maximums]))  # every gated metric is computed
    evaluation_days = section.integer("evaluation_days", training.validation_days, minimum=1, maximum=MAX_DAYS)
    if evaluation_days > training.validation_days:
        # Older days were fit on: a model scored on its own training rows looks better than it is.
        section.fail("evaluation_days", f"must be at most training.validation_days ({training.validation_days}), got {evaluation_days}")
    segments = section.string_list("segments")
    not_categorical = [c for c in segments if c not in features.categorical]
    if not_categorical:
        section.fail("segments", f"must name categorical features {list(features.categorical)}; got {not_categorical}")
    margin = section.number("margin", defaults.margin, minimum=0.0, maximum=1.0)
    max_regression = section.number("max_segment_regression", None, minimum=0.0, maximum=1.0)
    if segments and max_regression is None:
        section.fail("max_segment_regression", "is required when segments are listed")
    spec = PromotionSpec(
        primary_metric=primary,
        metrics=metrics,
        evaluation_days=evaluation_days,
        minimums=minimums,
        maximums=maximums,
        comparison=section.choice("comparison", COMPARISONS, default=defaults.comparison),
        margin=float(margin),
        confidence=float(section.number("confidence", defaults.confidence, minimum=0.5, maximum=0.999)),
        bootstrap_resamples=section.integer("bootstrap_resamples", defaults.bootstrap_resamples, minimum=100, maximum=100_000),
        seed=section.integer("seed", training.seed, minimum=0, maximum=MAX_SEED),
        segments=segments,
        max_segment_regression=None if max_regression is None else float(max_regression),
        min_segment_rows=section.integer("min_segment_rows", defaults.min_segment_rows, minimum=1, maximum=MAX_ROWS),
        require_approval=section.boolean("require_approval", False),
        four_eyes=section.boolean("four_eyes", False),
        approval_timeout_hours=float(section.number("approval_timeout_hours", defaults.approval_timeout_hours, minimum=0.01, maximum=30 * 24)),
        pool=section.string("pool", defaults.pool),
    )
    section.finish()
    return spec


def _parse_serving(section: _Section) -> ServingSpec:
    defaults = ServingSpec()
    backend = section.choice("backend", SERVING_BACKENDS, default=defaults.backend)
    override = os.environ.get("MLOPS_SERVING_BACKEND")
    if override:
        if override not in SERVING_BACKENDS:
            raise ModelSpecError(section.source, "serving.backend", f"MLOPS_SERVING_BACKEND={shown(override)} is not one of {list(SERVING_BACKENDS)}")
        backend = override
    smoke_section = section.section("smoke", required=False)
    smoke = SmokeSpec(
        golden_rows=smoke_section.integer("golden_rows", SmokeSpec.golden_rows, minimum=1, maximum=10_000),
        burst_requests=smoke_section.integer("burst_requests", SmokeSpec.burst_requests, minimum=1, maximum=10_000),
        max_p95_ms=float(smoke_section.number("max_p95_ms", SmokeSpec.max_p95_ms, minimum=1.0, maximum=600_000.0)),
        max_error_rate=float(smoke_section.number("max_error_rate", SmokeSpec.max_error_rate, minimum=0.0, maximum=1.0)),
        tolerance=float(smoke_section.number("tolerance", SmokeSpec.tolerance, minimum=0.0, maximum=1.0)),
    )
    smoke_section.finish()
    k8s = section.section("kubernetes", required=False)
    spec = ServingSpec(
        backend=backend,
        drain_seconds=section.integer("drain_seconds", defaults.drain_seconds, minimum=0, maximum=DAY_SECONDS),
        ready_timeout_seconds=section.integer("ready_timeout_seconds", defaults.ready_timeout_seconds, minimum=1, maximum=DAY_SECONDS),
        smoke=smoke,
        namespace=k8s.string("namespace", defaults.namespace),
        replicas=k8s.integer("replicas", defaults.replicas, minimum=1, maximum=100),
        port=k8s.integer("port", defaults.port, minimum=1, maximum=65535),
        kubernetes_conn_id=k8s.string("conn_id", defaults.kubernetes_conn_id),
        docker=_parse_docker_serving(section.section("docker", required=False)),
        local=_parse_local_serving(section.section("local", required=False)),
    )
    k8s.finish()
    section.finish()
    return spec


def _admin_address(section: _Section, key: str, default: str) -> str:
    """``unix:/absolute/path`` or ``http(s)://host[:port]`` with no path."""
    import urllib.parse

    value = section.string(key, default)
    if value.startswith("unix:"):
        if not value[len("unix:") :].startswith("/"):
            section.fail(key, f"must be unix:/absolute/path or http(s)://host:port, got {shown(value)}")
        return value
    try:
        parsed = urllib.parse.urlsplit(value)
        ok = parsed.scheme in {"http", "https"} and bool(parsed.hostname) and parsed.path in {"", "/"} and not parsed.query
        parsed.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        ok = False
    if not ok:
        section.fail(key, f"must be unix:/absolute/path or http(s)://host:port, got {shown(value)}")
    return value.rstrip("/")


def _parse_docker_serving(section: _Section) -> DockerServingSpec:
    defaults = DockerServingSpec()
    spec = DockerServingSpec(
        image=section.string("image", defaults.image),
        network=section.string("network", defaults.network),
        base_url=section.string("base_url", defaults.base_url),
        router_admin_url=_admin_address(section, "router_admin_url", defaults.router_admin_url),
        router_host=section.string("router_host", defaults.router_host),
        live_port=section.integer("live_port", defaults.live_port, minimum=1, maximum=65535),
        container_port=section.integer("container_port", defaults.container_port, minimum=1, maximum=65535),
    )
    section.finish()
    return spec


def _environment_port(section: _Section, key: str, default: int) -> int:
    """``MLOPS_SERVING_<COLOUR>_PORT`` when set (the embedded stack's and the tests' default), else ``default``."""
    variable = LOCAL_PORT_ENV[key]
    raw = os.environ.get(variable)
    if raw is None:
        return default
    if not raw.isascii() or not raw.strip().isdigit() or not 1 <= int(raw) <= 65535:
        raise ModelSpecError(section.source, f"{section.path}.{key}", f"{variable}={shown(raw)} is not a port (1-65535)")
    return int(raw)


def _parse_local_serving(section: _Section) -> LocalServingSpec:
    defaults = LocalServingSpec()
    if section.raw.get("live_port") is not None:
        live = section.integer("live_port", minimum=1, maximum=65533)
        blue_default, green_default = live + 1, live + 2
    else:
        live = _environment_port(section, "live_port", defaults.live_port)
        blue_default = _environment_port(section, "blue_port", defaults.blue_port)
        green_default = _environment_port(section, "green_port", defaults.green_port)
    spec = LocalServingSpec(
        live_port=live,
        blue_port=section.integer("blue_port", blue_default, minimum=1, maximum=65535),
        green_port=section.integer("green_port", green_default, minimum=1, maximum=65535),
        explicit=any(section.raw.get(key) is not None for key in ("live_port", "blue_port", "green_port")),
    )
    if len(set(spec.ports)) != 3:
        section.fail("", f"live_port, blue_port and green_port must be three different ports, got {list(spec.ports)}")
    section.finish()
    return spec


def _parse_drift(section: _Section, features: FeatureSpec) -> DriftSpec:
    defaults = DriftSpec()
    chosen = section.string_list("features")
    unknown = [c for c in chosen if c not in features.columns]
    if unknown:
        section.fail("features", f"must name features of the spec {list(features.columns)}; got {unknown}")
    window_days = section.integer("window_days", defaults.window_days, minimum=1, maximum=MAX_DAYS)
    lookback_days = section.integer("lookback_days", defaults.lookback_days, minimum=1, maximum=MAX_DAYS)
    if lookback_days < window_days:
        section.fail("lookback_days", f"must be at least window_days ({window_days}), got {lookback_days}")
    max_backfill_days = section.integer("max_backfill_days", defaults.max_backfill_days, minimum=1, maximum=MAX_BACKFILL_DAYS)
    if max_backfill_days < lookback_days:
        # A drift's backfill runs from its onset, which lies up to lookback_days back.
        section.fail("max_backfill_days", f"must be at least lookback_days ({lookback_days}), got {max_backfill_days}")
    alpha = section.number("alpha", defaults.alpha, minimum=1e-6, maximum=0.5)
    spec = DriftSpec(
        features=chosen,
        window_days=window_days,
        lookback_days=lookback_days,
        alpha=float(alpha),
        min_effect=float(section.number("min_effect", defaults.min_effect, minimum=0.0, maximum=1.0)),
        min_samples=section.integer("min_samples", defaults.min_samples, minimum=1, maximum=MAX_ROWS),
        check_interval_minutes=section.integer("check_interval_minutes", defaults.check_interval_minutes, minimum=1, maximum=24 * 60),
        timeout_minutes=section.integer("timeout_minutes", defaults.timeout_minutes, minimum=0, maximum=WEEK_MINUTES),
        cooldown_hours=float(section.number("cooldown_hours", defaults.cooldown_hours, minimum=0.0, maximum=YEAR_HOURS)),
        report=section.boolean("report", defaults.report),
        max_backfill_days=max_backfill_days,
    )
    section.finish()
    return spec


def _parse_schedules(section: _Section) -> ScheduleSpec:
    start = section._get("start_date", dt.date(2026, 1, 1), False)
    if isinstance(start, str):
        try:
            start = dt.date.fromisoformat(start)
        except ValueError:
            section.fail("start_date", f"must be a date (YYYY-MM-DD), got {shown(start)}")
    if isinstance(start, dt.datetime) or not isinstance(start, dt.date):
        section.fail("start_date", f"must be a date (YYYY-MM-DD), got {shown(start)}")
    spec = ScheduleSpec(
        start_date=start,
        retrain=_cron(section, "retrain", "0 3 * * 1"),
        drift_monitor=_cron(section, "drift_monitor", "@hourly"),
        batch_score=_cron(section, "batch_score", "@daily"),
    )
    section.finish()
    return spec


# libyaml's safe loader when PyYAML was built with it (every wheel is): DAG files load every
# spec at parse time, and the pure-Python loader took ~40 ms of a ~100 ms parse.
_BaseSafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseSafeLoader):  # type: ignore[misc,valid-type]
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"found the key {shown(key, 40)} twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str | bytes, source: str) -> Any:
    """The YAML document of a spec, after the checks that must come before it is built."""
    if isinstance(text, str):  # from an environment variable: undecodable bytes arrive as surrogates
        text = text.encode("utf-8", errors="surrogateescape")
    size = len(text)
    if size > MAX_SPEC_BYTES:
        raise ModelSpecError(source, "<file>", f"is {size} bytes; a spec may have at most {MAX_SPEC_BYTES}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ModelSpecError(source, "<file>", f"is not UTF-8 text (byte {err.start}: {err.reason})") from err
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_BaseSafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ModelSpecError(source, "<file>", f"uses a YAML anchor or alias (line {event.start_mark.line + 1}); write the values out")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise ModelSpecError(source, "<file>", f"nests more than {MAX_NESTING} levels deep (line {event.start_mark.line + 1})")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise ModelSpecError(source, "<file>", f"is not valid YAML: {shown(str(err), 300)}") from err
    except (ValueError, OverflowError) as err:  # e.g. an integer literal of thousands of digits
        raise ModelSpecError(source, "<file>", f"holds a value YAML cannot build: {shown(str(err), 200)}") from err


def _refuse_templates(value: Any, source: str, path: str = "") -> None:
    """No spec string may carry Jinja syntax: it would be rendered in a templated field."""
    if isinstance(value, str) and _TEMPLATE_SYNTAX.search(value):
        raise ModelSpecError(source, path or "<top level>", f"must not contain template syntax ('{{{{', '{{%', '{{#'), got {shown(value)}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_templates(key, source, path)
            _refuse_templates(item, source, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_templates(item, source, f"{path}[{index}]")


def load_spec_text(text: str, *, source: str) -> ModelSpec:
    """Validate a spec handed over as YAML text (a pod gets its spec in an environment variable)."""
    return parse_spec(_parse_yaml(text, source), source=source)


def load_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """Load and validate one spec file; its file name must be ``<name>.yaml``."""
    path = Path(path)
    source = str(path)
    try:
        content = path.read_bytes()
    except OSError as err:
        raise ModelSpecError(source, "<file>", f"cannot be read: {err.strerror or err}") from err
    spec = parse_spec(_parse_yaml(content, source), source=source)
    if path.stem != spec.name:
        raise ModelSpecError(source, "name", f"must match the file name {shown(path.stem)}, got {shown(spec.name)}")
    return spec


@dataclass(frozen=True)
class SpecFolder:
    """A folder of specs, each loaded on its own: ``specs`` that passed, ``errors`` of those that did not."""

    specs: tuple[ModelSpec, ...]
    errors: tuple[ModelSpecError, ...]


def load_spec_folder(directory: str | os.PathLike[str]) -> SpecFolder:
    """Load every ``*.yaml`` / ``*.yml`` in ``directory`` on its own: one bad file costs only its own model.

    Besides each file's own checks, a spec is refused when an earlier one (by file name) has
    its name, or a local serving port or Docker live port of its (two models cannot serve on one).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelSpecError(str(directory), "<directory>", "does not exist or is not a directory")
    loaded: list[ModelSpec] = []
    errors: list[ModelSpecError] = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        try:
            loaded.append(load_spec(path))
        except ModelSpecError as err:
            errors.append(err)
    # Who keeps a contested name or port: a spec that sets its ports before one that takes the
    # defaults, then the older file (the one added last is refused, not a model already running).
    accepted: list[ModelSpec] = []
    for spec in sorted(loaded, key=_claim_order):
        try:
            _refuse_clashes(spec, accepted)
        except ModelSpecError as err:
            errors.append(err)
            continue
        accepted.append(spec)
    return SpecFolder(tuple(sorted(accepted, key=lambda s: s.name)), tuple(errors))


def _claim_order(spec: ModelSpec) -> tuple[bool, float, str]:
    try:
        modified = os.stat(spec.source).st_mtime
    except OSError:
        modified = math.inf
    return (not spec.serving.local.explicit, modified, spec.source)


def _refuse_clashes(spec: ModelSpec, accepted: Iterable[ModelSpec]) -> None:
    for other in accepted:
        if other.name == spec.name:
            raise ModelSpecError(spec.source, "name", f"{shown(spec.name)} is already the name of {other.source}")
        if spec.serving.backend == "local" and other.serving.backend == "local":
            for key, port in zip(("live_port", "blue_port", "green_port"), spec.serving.local.ports, strict=True):
                if port in other.serving.local.ports:
                    raise ModelSpecError(
                        spec.source,
                        f"serving.local.{key}",
                        f"port {port} is already {other.name}'s ({other.source}); give every model its own three ports (set serving.local.live_port here)",
                    )
        if spec.serving.backend == "docker" and other.serving.backend == "docker" and spec.serving.docker.live_port == other.serving.docker.live_port:
            raise ModelSpecError(
                spec.source,
                "serving.docker.live_port",
                f"port {spec.serving.docker.live_port} is already {other.name}'s ({other.source}); one live port per model",
            )


def load_specs(directory: str | os.PathLike[str]) -> list[ModelSpec]:
    """Every spec in ``directory``, sorted by name; raises the first error (command lines; DAG files use :func:`load_spec_folder`)."""
    folder = load_spec_folder(directory)
    if folder.errors:
        raise folder.errors[0]
    return list(folder.specs)


def find_spec(directory: str | os.PathLike[str], name: str) -> ModelSpec:
    """Load the spec called ``name`` from ``directory``."""
    for suffix in (".yaml", ".yml"):
        candidate = Path(directory) / f"{name}{suffix}"
        if candidate.exists():
            return load_spec(candidate)
    raise ModelSpecError(str(directory), "<directory>", f"has no spec for model {shown(name)}")
