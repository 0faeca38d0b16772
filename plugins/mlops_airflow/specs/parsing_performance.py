"""Parsing the ``performance`` section: where late labels land and when the champion has decayed."""

from __future__ import annotations

from mlops_airflow.specs.model import (
    HIGHER_IS_BETTER,
    MAX_DAYS,
    MAX_ROWS,
    YEAR_HOURS,
    DataContract,
    FeatureSpec,
    PerformanceSpec,
    PromotionSpec,
    TargetSpec,
    shown,
)
from mlops_airflow.specs.reading import _Section, _uri


def parse_performance(section: _Section, *, promotion: PromotionSpec, features: FeatureSpec, target: TargetSpec, contract: DataContract) -> PerformanceSpec:
    """The performance section; its metric, floor and confidence default to the promotion's."""
    defaults = PerformanceSpec(labels_uri="", key="")
    labels_uri = _uri(section, "labels_uri")
    key = section.string("key", required=True)
    # Batch predictions carry every column but the features and the target: the key must be one of those.
    if key in features.columns or key == target.column:
        section.fail("key", f"must not be a feature or the target: predictions carry the other columns of the data; got {shown(key)}")
    if contract.column(key) is None:
        section.fail("key", f"must be a column of the data contract (contract.columns); got {shown(key)}")
    if len(target.classes) != 2:
        section.fail("", f"performance monitoring judges binary classifiers; target.classes has {len(target.classes)} classes")
    default_metric = promotion.primary_metric if promotion.primary_metric in HIGHER_IS_BETTER else defaults.metric
    metric = section.choice("metric", HIGHER_IS_BETTER, default_metric)
    # An explicit null turns a test off; a missing field takes its default.
    floor = section.number("floor", promotion.minimums.get(metric), minimum=0.0, maximum=1.0)
    if "floor" in section.raw and section.raw["floor"] is None:
        floor = None
    max_drop = section.number("max_drop", defaults.max_drop, minimum=0.0, maximum=1.0)
    if "max_drop" in section.raw and section.raw["max_drop"] is None:
        max_drop = None
    if floor is None and max_drop is None:
        section.fail("", "needs a floor, a max_drop, or both: otherwise nothing could ever count as decay")
    spec = PerformanceSpec(
        labels_uri=labels_uri,
        key=key,
        label_delay_days=section.integer("label_delay_days", defaults.label_delay_days, minimum=0, maximum=MAX_DAYS),
        window_days=section.integer("window_days", defaults.window_days, minimum=1, maximum=MAX_DAYS),
        metric=metric,
        floor=None if floor is None else float(floor),
        max_drop=None if max_drop is None else float(max_drop),
        confidence=float(section.number("confidence", promotion.confidence, minimum=0.5, maximum=0.999)),
        bootstrap_resamples=section.integer("bootstrap_resamples", promotion.bootstrap_resamples, minimum=100, maximum=100_000),
        min_labelled_rows=section.integer("min_labelled_rows", defaults.min_labelled_rows, minimum=10, maximum=MAX_ROWS),
        cooldown_hours=float(section.number("cooldown_hours", defaults.cooldown_hours, minimum=0.0, maximum=YEAR_HOURS)),
        retrain=section.boolean("retrain", defaults.retrain),
    )
    section.finish()
    return spec
