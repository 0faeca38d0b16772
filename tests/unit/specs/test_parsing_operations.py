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
