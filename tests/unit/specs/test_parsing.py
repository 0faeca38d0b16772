"""mlops_airflow.specs.parsing: the top level, data, features, target, training, the contract and promotion."""

from __future__ import annotations

import pytest
from helpers import churn_spec_raw

from mlops_airflow.constants import TrainingBackend
from mlops_airflow.specs import ModelSpecError, parse_spec


def with_change(path: str, value) -> dict:
    """The demo spec with one dotted field set (``value=...`` deletes it)."""
    raw = churn_spec_raw()
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


class TestValidation:
    @pytest.mark.parametrize(
        ("path", "value", "field", "message"),
        [
            pytest.param("name", "Churn_Model", "name", "lowercase letters", id="bad-name"),
            pytest.param("data.uri", ..., "data.uri", "is required", id="missing-uri"),
            pytest.param("data.timestamp_column", 3, "data.timestamp_column", "non-empty string", id="ts-not-string"),
            pytest.param("features.numeric", "tenure_months", "features.numeric", "list of strings", id="numeric-not-list"),
            pytest.param("features.categorical", ["region", "region"], "features.categorical", "more than once", id="duplicate-column"),
            pytest.param("features.categorical", ["tenure_months"], "features.categorical", "also listed as numeric", id="overlap"),
            pytest.param("target.classes", [1], "target.classes", "at least two", id="one-class"),
            pytest.param("target.column", "contract", "features", "cannot also be a feature", id="target-is-feature"),
            pytest.param("training.backend", "k8s", "training.backend", "must be one of", id="unknown-backend"),
            pytest.param("training.window_days", "28", "training.window_days", "must be an integer", id="window-not-int"),
            pytest.param("training.validation_days", 28, "training.validation_days", "smaller than window_days", id="validation-too-long"),
            pytest.param("training.estimator.kind", "xgb", "training.estimator.kind", "must be one of", id="unknown-estimator"),
            pytest.param("training.compute.gpus", -1, "training.compute.gpus", ">= 0", id="negative-gpus"),
            pytest.param("training.colour", "blue", "training.colour", "unknown field", id="typo-in-training"),
            pytest.param("colour", "blue", "colour", "unknown field", id="typo-at-top"),
            pytest.param("promotion.primary_metric", "auc", "promotion.primary_metric", "must be one of", id="unknown-primary"),
            pytest.param("promotion.metrics", ["roc_auc", "gini"], "promotion.metrics", "unknown metrics ['gini']", id="unknown-metric"),
            pytest.param("promotion.minimums", {"log_loss": 0.5}, "promotion.minimums.log_loss", "promotion.maximums", id="floor-on-a-loss"),
            pytest.param("promotion.maximums", {"roc_auc": 0.9}, "promotion.maximums.roc_auc", "promotion.minimums", id="ceiling-on-auc"),
            pytest.param("promotion.minimums", {"roc_auc": "high"}, "promotion.minimums.roc_auc", "must be a finite number", id="threshold-not-number"),
            pytest.param("promotion.evaluation_days", 8, "promotion.evaluation_days", "at most training.validation_days (7)", id="eval-on-fit-days"),
            pytest.param("promotion.segments", ["tenure_months"], "promotion.segments", "categorical features", id="numeric-segment"),
            pytest.param("promotion.max_segment_regression", ..., "promotion.max_segment_regression", "required when segments", id="segments-no-limit"),
            pytest.param("promotion.comparison", "better", "promotion.comparison", "must be one of", id="unknown-comparison"),
            pytest.param("promotion.margin", -0.1, "promotion.margin", "must be within", id="negative-margin"),
            pytest.param("promotion.bootstrap_resamples", 10, "promotion.bootstrap_resamples", ">= 100", id="too-few-resamples"),
            pytest.param("promotion.approve", True, "promotion.approve", "unknown field", id="typo-in-promotion"),
        ],
    )
    def test_error_names_the_field(self, path, value, field, message):
        with pytest.raises(ModelSpecError) as info:
            parse_spec(with_change(path, value), source="models/churn.yaml")
        assert info.value.source == "models/churn.yaml"
        assert info.value.field == field
        assert message in info.value.problem
        assert str(info.value).startswith(f"models/churn.yaml: {field}: ")

    def test_remote_backend_needs_an_image(self):
        raw = with_change("training.backend", "kubernetes")
        del raw["training"]["compute"]["image"]
        with pytest.raises(ModelSpecError, match="training.compute.image: is required for the 'kubernetes' training backend"):
            parse_spec(raw, source="s")

    def test_backend_override_from_environment(self, monkeypatch):
        monkeypatch.setenv("MLOPS_TRAINING_BACKEND", "docker")
        assert parse_spec(churn_spec_raw(), source="s").training.backend is TrainingBackend.DOCKER
        monkeypatch.setenv("MLOPS_TRAINING_BACKEND", "slurm")
        with pytest.raises(ModelSpecError, match="MLOPS_TRAINING_BACKEND='slurm'"):
            parse_spec(churn_spec_raw(), source="s")

    def test_optional_fields_may_be_left_out(self):
        raw = churn_spec_raw()
        for key in ("description", "owner", "tags", "schedules"):
            del raw[key]
        spec = parse_spec(raw, source="s")
        assert (spec.description, spec.owner, spec.tags) == ("", "ml-platform", ())

    def test_promotion_defaults(self):
        raw = churn_spec_raw()
        del raw["promotion"]
        promotion = parse_spec(raw, source="s").promotion
        assert (promotion.primary_metric, promotion.comparison, promotion.margin) == ("roc_auc", "non_inferiority", 0.0)
        assert promotion.evaluation_days == raw["training"]["validation_days"]
        assert promotion.seed == raw["training"]["seed"]
        assert promotion.pool == "mlops_promotion"

    def test_every_gated_metric_is_computed(self):
        raw = with_change("promotion.metrics", ["accuracy"])
        raw["promotion"]["maximums"] = {"brier": 0.3}
        assert parse_spec(raw, source="s").promotion.metrics == ("roc_auc", "accuracy", "brier")
