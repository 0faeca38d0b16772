"""mlops_airflow.specs.reading: safe YAML, ``${MLOPS_*}`` expansion, URIs and crons."""

from __future__ import annotations

import pytest
from helpers import churn_spec_raw

from mlops_airflow.specs import ModelSpecError, expand_env, load_spec, parse_spec


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


class TestLoadSpec:
    def test_invalid_yaml_names_the_file(self, tmp_path):
        (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
        with pytest.raises(ModelSpecError, match=r"bad\.yaml: <file>: is not valid YAML"):
            load_spec(tmp_path / "bad.yaml")


class TestValidation:
    @pytest.mark.parametrize(
        ("path", "value", "field", "message"),
        [
            pytest.param("schedules.retrain", "every monday", "schedules.retrain", "not a valid cron", id="bad-cron"),
            pytest.param("schedules.batch_score", "@once", "schedules.batch_score", "must be a cron expression or one of", id="once-preset"),
        ],
    )
    def test_error_names_the_field(self, path, value, field, message):
        with pytest.raises(ModelSpecError) as info:
            parse_spec(with_change(path, value), source="models/churn.yaml")
        assert info.value.source == "models/churn.yaml"
        assert info.value.field == field
        assert message in info.value.problem
        assert str(info.value).startswith(f"models/churn.yaml: {field}: ")

    def test_schedules_can_be_disabled(self):
        raw = with_change("schedules.retrain", None)
        assert parse_spec(raw, source="s").schedules.retrain is None

    def test_object_store_uri_passes_through(self):
        raw = with_change("data.uri", "s3://bucket/churn/")
        assert parse_spec(raw, source="s").data.uri == "s3://bucket/churn"


class TestExpandEnv:
    def test_set_variable_wins_over_default(self):
        assert expand_env("${MLOPS_ROOT:-/d}/x", source="s", field_path="f", environ={"MLOPS_ROOT": "/r"}) == "/r/x"

    def test_default_when_unset_or_empty(self):
        assert expand_env("${MLOPS_ROOT:-/d}/x", source="s", field_path="f", environ={"MLOPS_ROOT": ""}) == "/d/x"

    def test_unset_without_default_is_an_error(self):
        with pytest.raises(ModelSpecError, match=r"s: data.uri: environment variable MLOPS_ROOT is not set"):
            expand_env("${MLOPS_ROOT}/x", source="s", field_path="data.uri", environ={})

    def test_only_mlops_variables_may_be_named(self):
        with pytest.raises(ModelSpecError, match=r"s: data.uri: \$\{AWS_SECRET_ACCESS_KEY\}: only variables named MLOPS_\* may be used"):
            expand_env("s3://b/${AWS_SECRET_ACCESS_KEY}", source="s", field_path="data.uri", environ={"AWS_SECRET_ACCESS_KEY": "x"})
