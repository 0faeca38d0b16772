"""Parsing a spec's mapping into a :class:`ModelSpec`: data, features, training, the data contract and promotion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlops_airflow.constants import TrainingBackend
from mlops_airflow.settings import TRAINING_BACKEND_ENV, training_backend_override
from mlops_airflow.specs.model import (
    _NAME_PATTERN,
    COLUMN_DTYPES,
    COMPARISONS,
    DAY_SECONDS,
    ESTIMATOR_KINDS,
    LOWER_IS_BETTER,
    MAX_DAYS,
    MAX_INTEGER,
    MAX_ROWS,
    MAX_SEED,
    METRIC_NAMES,
    ON_FAILURE_ACTIONS,
    WEEK_MINUTES,
    YEAR_HOURS,
    ColumnContract,
    ComputeSpec,
    DataContract,
    DataSpec,
    EstimatorSpec,
    FeatureSpec,
    ModelSpec,
    ModelSpecError,
    PromotionSpec,
    RowCountContract,
    TargetSpec,
    TrainingSpec,
    shown,
)
from mlops_airflow.specs.parsing_operations import _parse_drift, _parse_schedules, _parse_serving
from mlops_airflow.specs.parsing_performance import parse_performance
from mlops_airflow.specs.reading import _refuse_templates, _Section, _uri


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
    serving = _parse_serving(top.section("serving", required=False), data_uri=data_uri)
    drift = _parse_drift(top.section("drift", required=False), features)
    performance = None
    if top.raw.get("performance") is not None:
        performance = parse_performance(top.section("performance"), promotion=promotion, features=features, target=target, contract=contract)
    else:
        top.seen.add("performance")
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
        performance=performance,
        source=source,
    )
    top.finish()
    return spec


def _parse_training(section: _Section) -> TrainingSpec:
    backend = section.choice("backend", [b.value for b in TrainingBackend], default=TrainingBackend.LOCAL.value)
    override = training_backend_override()
    if override:
        if override not in {b.value for b in TrainingBackend}:
            raise ModelSpecError(section.source, "training.backend", f"{TRAINING_BACKEND_ENV}={shown(override)} is not a known backend")
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
