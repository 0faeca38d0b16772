"""mlops_airflow.specs.parsing_performance: the performance section (late labels, the decay judgement)."""

from __future__ import annotations

import pytest
from helpers import churn_spec_raw

from mlops_airflow.specs import ModelSpecError, parse_spec


def spec_with(performance, **top):
    raw = churn_spec_raw()
    raw["performance"] = performance
    raw.update(top)
    return parse_spec(raw, source="churn.yaml")


def test_the_demo_spec_monitors_performance_with_the_promotion_defaults():
    spec = parse_spec(churn_spec_raw(), source="churn.yaml")
    performance = spec.performance
    assert performance.labels_uri.endswith("/churn/labels")
    assert performance.labels_uri.startswith("file://")
    assert (performance.key, performance.label_delay_days, performance.window_days) == ("customer_id", 3, 7)
    assert (performance.metric, performance.floor, performance.max_drop) == ("roc_auc", 0.70, 0.05)
    assert spec.schedules.performance_monitor == "@daily"


def test_floor_confidence_and_resamples_default_to_the_promotions():
    performance = spec_with({"labels_uri": "/data/labels", "key": "customer_id"}).performance
    assert performance.floor == 0.70  # promotion.minimums.roc_auc
    assert (performance.confidence, performance.bootstrap_resamples) == (0.95, 1000)
    assert performance.max_drop == 0.05


def test_an_explicit_null_turns_a_test_off():
    assert spec_with({"labels_uri": "/l", "key": "customer_id", "floor": None}).performance.floor is None
    assert spec_with({"labels_uri": "/l", "key": "customer_id", "max_drop": None}).performance.max_drop is None


def test_without_a_section_there_is_no_monitor():
    raw = churn_spec_raw()
    del raw["performance"]
    assert parse_spec(raw, source="churn.yaml").performance is None


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"key": "tenure_months"}, "performance.key", "must not be a feature or the target"),
        ({"key": "churned"}, "performance.key", "must not be a feature or the target"),
        ({"key": "account"}, "performance.key", "must be a column of the data contract"),
        ({"metric": "log_loss"}, "performance.metric", "must be one of ['roc_auc', 'accuracy', 'f1']"),
        ({"label_delay_days": -1}, "performance.label_delay_days", "must be >= 0"),
        ({"window_days": 0}, "performance.window_days", "must be >= 1"),
        ({"floor": 1.5}, "performance.floor", "must be within [0.0, 1.0]"),
        ({"floor": None, "max_drop": None}, "performance", "needs a floor, a max_drop, or both"),
        ({"labels": "/x"}, "performance.labels", "unknown field"),
        ({"labels_uri": None}, "performance.labels_uri", "is required"),
    ],
)
def test_bad_fields_are_named(change, field, problem):
    performance = {"labels_uri": "/data/labels", "key": "customer_id", **change}
    performance = {k: v for k, v in performance.items() if not (k == "labels_uri" and v is None)}
    with pytest.raises(ModelSpecError) as caught:
        spec_with(performance)
    assert (caught.value.field, problem in caught.value.problem) == (field, True), caught.value


def test_multi_class_models_are_refused():
    raw = churn_spec_raw()
    raw["target"]["classes"] = [0, 1, 2]
    raw["contract"]["columns"]["churned"]["allowed"] = [0, 1, 2]
    raw["promotion"]["metrics"] = ["roc_auc", "accuracy"]
    with pytest.raises(ModelSpecError, match="performance: performance monitoring judges binary classifiers"):
        parse_spec(raw, source="churn.yaml")
