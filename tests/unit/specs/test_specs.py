from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import CHURN_SPEC, churn_spec_raw, write_spec

from mlops_airflow.constants import TrainingBackend
from mlops_airflow.specs import ModelSpecError, expand_env, find_spec, load_spec, load_spec_folder, load_specs, parse_spec


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
    def test_demo_spec_loads(self, monkeypatch):
        monkeypatch.setenv("MLOPS_DATA_ROOT", "/srv/data")
        spec = load_spec(CHURN_SPEC)
        assert spec.name == "churn"
        assert spec.data.uri == "file:///srv/data/churn/events"
        assert spec.features.columns == (
            "tenure_months",
            "monthly_charges",
            "total_spend",
            "support_calls",
            "days_since_last_login",
            "contract",
            "region",
            "payment_method",
        )
        assert spec.target.classes == (0, 1)
        assert spec.training.backend is TrainingBackend.LOCAL
        assert spec.training.estimator.kind == "hist_gradient_boosting"
        assert spec.schedules.start_date == dt.date(2026, 1, 1)
        assert spec.schedules.drift_monitor == "@hourly"

    def test_load_specs_reads_the_folder_sorted(self, tmp_path):
        for name, live_port in (("zeta", 9100), ("alpha", 9200)):
            raw = churn_spec_raw()
            raw["name"] = name
            raw["serving"]["local"] = {"live_port": live_port}
            write_spec(raw, tmp_path, f"{name}.yaml")
        assert [s.name for s in load_specs(tmp_path)] == ["alpha", "zeta"]
        assert find_spec(tmp_path, "zeta").name == "zeta"

    def test_each_spec_loads_on_its_own(self, tmp_path):
        write_spec(churn_spec_raw(), tmp_path)
        (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["churn"]
        assert [(Path(e.source).name, e.field) for e in folder.errors] == [("bad.yaml", "<file>")]
        with pytest.raises(ModelSpecError, match=r"bad\.yaml"):
            load_specs(tmp_path)

    def test_the_same_name_twice_refuses_the_later_file(self, tmp_path):
        first = churn_spec_raw()
        first["serving"]["local"] = {"live_port": 9200}
        write_spec(first, tmp_path)
        raw = churn_spec_raw()
        raw["serving"]["local"] = {"live_port": 9300}
        write_spec(raw, tmp_path, "churn.yml")
        folder = load_spec_folder(tmp_path)
        assert [s.source for s in folder.specs] == [str(tmp_path / "churn.yaml")]
        assert "is already the name of" in str(folder.errors[0])
        assert folder.errors[0].source.endswith("churn.yml")

    def test_local_ports_default_from_the_environment_or_follow_the_live_port(self, tmp_path, monkeypatch):
        for variable in ("MLOPS_SERVING_LIVE_PORT", "MLOPS_SERVING_BLUE_PORT", "MLOPS_SERVING_GREEN_PORT"):
            monkeypatch.delenv(variable, raising=False)
        assert load_spec(write_spec(churn_spec_raw(), tmp_path)).serving.local.ports == (8500, 8501, 8502)
        monkeypatch.setenv("MLOPS_SERVING_LIVE_PORT", "9000")
        assert load_spec(write_spec(churn_spec_raw(), tmp_path)).serving.local.ports == (9000, 8501, 8502)
        raw = churn_spec_raw()
        raw["serving"]["local"] = {"live_port": 9400}
        assert load_spec(write_spec(raw, tmp_path)).serving.local.ports == (9400, 9401, 9402)
        raw["serving"]["local"] = {"live_port": 9400, "green_port": 9410}
        assert load_spec(write_spec(raw, tmp_path)).serving.local.ports == (9400, 9401, 9410)

    @pytest.mark.parametrize(
        ("local", "environ", "match"),
        [
            ({"live_port": 9400, "blue_port": 9400}, {}, r"serving\.local: .*three different ports"),
            ({"live_port": 70000}, {}, r"serving\.local\.live_port"),
            ({"live_port": "8500"}, {}, r"serving\.local\.live_port"),
            ({"admin_port": 1}, {}, r"serving\.local.*admin_port"),
            ({}, {"MLOPS_SERVING_LIVE_PORT": "http"}, r"serving\.local\.live_port: MLOPS_SERVING_LIVE_PORT='http' is not a port"),
            ({}, {"MLOPS_SERVING_BLUE_PORT": "0"}, r"serving\.local\.blue_port: MLOPS_SERVING_BLUE_PORT='0' is not a port"),
        ],
    )
    def test_bad_local_ports_are_refused(self, tmp_path, monkeypatch, local, environ, match):
        for variable, value in environ.items():
            monkeypatch.setenv(variable, value)
        raw = churn_spec_raw()
        raw["serving"]["local"] = local
        with pytest.raises(ModelSpecError, match=match):
            load_spec(write_spec(raw, tmp_path))

    def test_a_model_added_later_never_takes_the_ports_of_one_already_there(self, tmp_path):
        """Both take the default ports: the newer file is refused, whatever the names' order."""
        import os

        write_spec(churn_spec_raw(), tmp_path)
        raw = churn_spec_raw()
        raw["name"] = "abc"
        newer = write_spec(raw, tmp_path, "abc.yaml")
        os.utime(tmp_path / "churn.yaml", (1_000_000, 1_000_000))
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["churn"]
        assert folder.errors[0].source == str(newer)
        assert "set serving.local.live_port here" in folder.errors[0].problem

    def test_a_spec_that_sets_its_ports_keeps_them_against_one_that_takes_the_defaults(self, tmp_path, monkeypatch):
        import os

        monkeypatch.setenv("MLOPS_SERVING_LIVE_PORT", "9700")
        write_spec(churn_spec_raw(), tmp_path)  # its live port by default: 9700, from the environment
        raw = churn_spec_raw()
        raw["name"] = "zeta"
        raw["serving"]["local"] = {"live_port": 9699}  # 9699-9701: 9700 is churn's live port
        write_spec(raw, tmp_path, "zeta.yaml")
        os.utime(tmp_path / "churn.yaml", (1_000_000, 1_000_000))  # older, and still refused
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["zeta"]
        assert folder.errors[0].source.endswith("churn.yaml")

    def test_two_docker_models_cannot_share_a_live_port(self, tmp_path):
        for name in ("alpha", "beta"):
            raw = churn_spec_raw()
            raw["name"] = name
            raw["serving"]["backend"] = "docker"
            write_spec(raw, tmp_path, f"{name}.yaml")
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["alpha"]
        assert folder.errors[0].field == "serving.docker.live_port"

    def test_file_name_must_match(self, tmp_path):
        (tmp_path / "other.yaml").write_text(CHURN_SPEC.read_text())
        with pytest.raises(ModelSpecError, match=r"other\.yaml: name: must match the file name 'other'"):
            load_spec(tmp_path / "other.yaml")

    def test_invalid_yaml_names_the_file(self, tmp_path):
        (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
        with pytest.raises(ModelSpecError, match=r"bad\.yaml: <file>: is not valid YAML"):
            load_spec(tmp_path / "bad.yaml")

    def test_missing_folder(self, tmp_path):
        with pytest.raises(ModelSpecError, match="does not exist"):
            load_specs(tmp_path / "nope")

    def test_missing_model(self, tmp_path):
        with pytest.raises(ModelSpecError, match="has no spec for model 'ghost'"):
            find_spec(tmp_path, "ghost")


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
            pytest.param("schedules.retrain", "every monday", "schedules.retrain", "not a valid cron", id="bad-cron"),
            pytest.param("schedules.batch_score", "@once", "schedules.batch_score", "must be a cron expression or one of", id="once-preset"),
            pytest.param("schedules.start_date", "yesterday", "schedules.start_date", "must be a date", id="bad-start-date"),
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
            pytest.param("drift.features", ["age"], "drift.features", "must name features of the spec", id="drift-unknown-feature"),
            pytest.param("drift.lookback_days", 0, "drift.lookback_days", ">= 1", id="drift-no-lookback"),
            pytest.param("drift.window_days", 8, "drift.lookback_days", "at least window_days (8)", id="drift-window-beyond-lookback"),
            pytest.param("drift.alpha", 0.9, "drift.alpha", "must be within", id="drift-alpha"),
            pytest.param("drift.min_effect", 1.5, "drift.min_effect", "must be within", id="drift-effect"),
            pytest.param("drift.min_samples", 0, "drift.min_samples", ">= 1", id="drift-samples"),
            pytest.param("drift.cooldown", 3, "drift.cooldown", "unknown field", id="drift-typo"),
            pytest.param("drift.max_backfill_days", 0, "drift.max_backfill_days", ">= 1", id="drift-no-backfill"),
            pytest.param("drift.max_backfill_days", 367, "drift.max_backfill_days", "<= 366", id="drift-backfill-over-a-year"),
            pytest.param("drift.max_backfill_days", 6, "drift.max_backfill_days", "at least lookback_days (7)", id="drift-backfill-below-lookback"),
            pytest.param("drift.max_backfill_days", "31", "drift.max_backfill_days", "integer", id="drift-backfill-not-integer"),
            pytest.param("serving.backend", "swarm", "serving.backend", "must be one of", id="unknown-serving-backend"),
            pytest.param("serving.docker.live_port", 70000, "serving.docker.live_port", "<= 65535", id="docker-port-too-high"),
            pytest.param("serving.docker.colour", "blue", "serving.docker.colour", "unknown field", id="docker-typo"),
            pytest.param(
                "serving.docker.router_admin_url", "unix:run/admin.sock", "serving.docker.router_admin_url", "unix:/absolute/path", id="admin-socket-relative"
            ),
            pytest.param("serving.docker.router_admin_url", "ftp://router:2019", "serving.docker.router_admin_url", "http(s)://host:port", id="admin-not-http"),
            pytest.param(
                "serving.docker.router_admin_url", "http://router:99999", "serving.docker.router_admin_url", "http(s)://host:port", id="admin-bad-port"
            ),
            pytest.param("serving.docker.router_admin_url", "http://router:2019/config", "serving.docker.router_admin_url", "host:port", id="admin-with-path"),
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

    def test_docker_serving_section(self, monkeypatch):
        monkeypatch.setenv("MLOPS_SERVING_BACKEND", "docker")
        serving = parse_spec(churn_spec_raw(), source="s").serving
        assert serving.backend == "docker"
        assert (serving.docker.network, serving.docker.live_port, serving.docker.router_host) == ("mlops-serving", 8000, "serving-router")

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

    def test_drift_defaults(self):
        raw = churn_spec_raw()
        del raw["drift"]
        drift = parse_spec(raw, source="s").drift
        assert (drift.features, drift.window_days, drift.alpha, drift.min_effect, drift.min_samples) == ((), 1, 0.05, 0.1, 500)
        assert drift.max_backfill_days == 31

    def test_max_backfill_days_may_equal_lookback_days(self):
        raw = with_change("drift.lookback_days", 60)
        raw["drift"]["max_backfill_days"] = 60
        assert parse_spec(raw, source="s").drift.max_backfill_days == 60

    def test_every_gated_metric_is_computed(self):
        raw = with_change("promotion.metrics", ["accuracy"])
        raw["promotion"]["maximums"] = {"brier": 0.3}
        assert parse_spec(raw, source="s").promotion.metrics == ("roc_auc", "accuracy", "brier")

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
