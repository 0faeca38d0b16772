"""mlops_airflow.specs.parsing_operations: serving (local ports, Docker), drift and schedules."""

from __future__ import annotations

import pytest
from helpers import churn_spec_raw, write_spec

from mlops_airflow.specs import ModelSpecError, load_spec, parse_spec


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


class TestValidation:
    @pytest.mark.parametrize(
        ("path", "value", "field", "message"),
        [
            pytest.param("schedules.start_date", "yesterday", "schedules.start_date", "must be a date", id="bad-start-date"),
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

    def test_docker_serving_section(self, monkeypatch):
        monkeypatch.setenv("MLOPS_SERVING_BACKEND", "docker")
        serving = parse_spec(churn_spec_raw(), source="s").serving
        assert serving.backend == "docker"
        assert (serving.docker.network, serving.docker.live_port, serving.docker.router_host) == ("mlops-serving", 8000, "serving-router")

    def test_max_backfill_days_may_equal_lookback_days(self):
        raw = with_change("drift.lookback_days", 60)
        raw["drift"]["max_backfill_days"] = 60
        assert parse_spec(raw, source="s").drift.max_backfill_days == 60


class TestInferenceLogAndRelease:
    def test_defaults_log_everything_beside_the_data_and_release_blue_green(self):
        serving = parse_spec(churn_spec_raw(), source="s").serving
        data_uri = parse_spec(churn_spec_raw(), source="s").data.uri
        assert serving.inference_log.uri == f"{data_uri}/_inference_log"
        assert (serving.inference_log.sample_rate, serving.inference_log.flush_seconds) == (1.0, 2.0)
        assert serving.release.strategy == "blue_green"
        assert serving.release.canary.steps == (10, 50)

    def test_without_the_section_blue_green_logs_nothing_and_a_canary_logs_everything(self):
        assert parse_spec(with_change("serving.inference_log", ...), source="s").serving.inference_log.uri is None
        raw = with_change("serving.inference_log", ...)
        raw["serving"]["release"] = {"strategy": "canary"}
        assert parse_spec(raw, source="s").serving.inference_log.sample_rate == 1.0

    @pytest.mark.parametrize(
        ("log", "message"),
        [
            pytest.param({"uri": "s3://key:secret@bucket/log"}, "must not carry credentials", id="credentials"),
            pytest.param({"uri": ""}, "non-empty", id="empty"),
            pytest.param({"uri": None}, "non-empty", id="null"),
        ],
    )
    def test_bad_log_uris_name_the_field(self, log, message):
        with pytest.raises(ModelSpecError) as info:
            parse_spec(with_change("serving.inference_log", log), source="s")
        assert info.value.field == "serving.inference_log.uri"
        assert message in info.value.problem

    def test_a_sample_rate_of_zero_logs_nothing(self):
        assert parse_spec(with_change("serving.inference_log", {"sample_rate": 0}), source="s").serving.inference_log.uri is None

    def test_a_canary_spec(self):
        raw = with_change("serving.release", {"strategy": "canary", "canary": {"steps": [5, 25, 75], "step_seconds": 60, "max_output_shift": 0.3}})
        canary = parse_spec(raw, source="s").serving.release.canary
        assert (canary.steps, canary.step_seconds, canary.max_output_shift) == ((5, 25, 75), 60, 0.3)

    @pytest.mark.parametrize(
        ("release", "field", "message"),
        [
            pytest.param({"strategy": "rainbow"}, "serving.release.strategy", "must be one of", id="unknown-strategy"),
            pytest.param({"strategy": "canary", "canary": {"steps": [50, 10]}}, "serving.release.canary.steps", "rising", id="steps-falling"),
            pytest.param({"canary": {"steps": [10, 100]}}, "serving.release.canary.steps", "between 1 and 99", id="step-of-100"),
            pytest.param({"canary": {"steps": []}}, "serving.release.canary.steps", "rising", id="no-steps"),
            pytest.param({"canary": {"steps": [10, 10]}}, "serving.release.canary.steps", "rising", id="repeated-step"),
            pytest.param({"canary": {"step": 10}}, "serving.release.canary.step", "unknown field", id="canary-typo"),
            pytest.param({"shadow": {"min_agreement": 2}}, "serving.release.shadow.min_agreement", "must be within", id="agreement-above-1"),
            pytest.param({"ab": {"percent": 100}}, "serving.release.ab.percent", "<= 99", id="ab-all"),
            pytest.param({"ab": {"cookie": "a b"}}, "serving.release.ab.cookie", "cookie name", id="ab-cookie"),
            pytest.param({"shadow": {"min_requests": 10, "max_requests": 5}}, "serving.release.shadow.min_requests", "never be judged", id="min-above-max"),
        ],
    )
    def test_bad_release_settings_name_the_field(self, release, field, message):
        with pytest.raises(ModelSpecError) as info:
            parse_spec(with_change("serving.release", release), source="s")
        assert info.value.field == field
        assert message in info.value.problem

    def test_a_canary_needs_the_log(self):
        raw = with_change("serving.release", {"strategy": "canary"})
        raw["serving"]["inference_log"] = {"sample_rate": 0}
        with pytest.raises(ModelSpecError, match="analysed on the inference log"):
            parse_spec(raw, source="s")

    def test_docker_splits_and_kubernetes_splits_through_a_gateway_without_ab(self, monkeypatch):
        from mlops_airflow.specs import GatewayRef

        monkeypatch.setenv("MLOPS_SERVING_BACKEND", "docker")
        assert parse_spec(with_change("serving.release", {"strategy": "ab"}), source="s").serving.release.strategy == "ab"
        monkeypatch.setenv("MLOPS_SERVING_BACKEND", "kubernetes")
        with pytest.raises(ModelSpecError, match="shadow on kubernetes serving \\(MLOPS_SERVING_BACKEND chose it\\) needs serving.kubernetes.gateway"):
            parse_spec(with_change("serving.release", {"strategy": "shadow"}), source="s")
        raw = with_change("serving.release", {"strategy": "canary"})
        raw["serving"]["kubernetes"]["gateway"] = {"name": "public", "section_name": "https"}
        assert parse_spec(raw, source="s").serving.gateway == GatewayRef("public", None, "https")
        raw["serving"]["release"]["strategy"] = "ab"
        with pytest.raises(ModelSpecError, match="the Gateway API's standard HTTPRoute has no session persistence"):
            parse_spec(raw, source="s")

    @pytest.mark.parametrize(
        ("gateway", "field", "problem"),
        [
            pytest.param({"namespace": "edge"}, "serving.kubernetes.gateway.name", "is required", id="no-name"),
            pytest.param({"name": "Public"}, "serving.kubernetes.gateway.name", "must be a DNS subdomain", id="upper-case"),
            pytest.param({"name": "gw", "namespace": "edge.zone"}, "serving.kubernetes.gateway.namespace", "must be a DNS label", id="dotted-namespace"),
            pytest.param({"name": "public", "listener": "https"}, "serving.kubernetes.gateway.listener", "unknown field", id="unknown-field"),
        ],
    )
    def test_a_bad_gateway_names_its_field(self, gateway, field, problem):
        raw = with_change("serving.release", {"strategy": "blue_green"})
        raw["serving"]["kubernetes"]["gateway"] = gateway
        with pytest.raises(ModelSpecError) as info:
            parse_spec(raw, source="s")
        assert info.value.field == field
        assert problem in info.value.problem
