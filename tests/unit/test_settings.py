"""The package's settings, read from the environment when asked for (so a change shows at once)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from mlops_airflow import settings


class TestSpecsDir:
    def test_the_variable_wins(self, monkeypatch, tmp_path):
        monkeypatch.setenv("MLOPS_SPECS_DIR", str(tmp_path))
        assert settings.specs_dir() == tmp_path

    def test_else_include_models_beside_the_dags_folder(self, monkeypatch, tmp_path):
        """The Astro layout, also when the package is pip-installed into an image."""
        (tmp_path / "dags").mkdir()
        (tmp_path / "include" / "models").mkdir(parents=True)
        monkeypatch.delenv("MLOPS_SPECS_DIR")
        monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "dags"))
        assert settings.specs_dir() == tmp_path / "include" / "models"

    def test_else_the_checkouts(self, monkeypatch, tmp_path):
        monkeypatch.setenv("MLOPS_SPECS_DIR", "")
        monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "dags"))
        assert settings.specs_dir() == REPO_ROOT / "include" / "models"


class TestRetryDelay:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            pytest.param(None, dt.timedelta(minutes=2), id="unset"),
            pytest.param("", dt.timedelta(minutes=2), id="empty"),
            pytest.param("  ", dt.timedelta(minutes=2), id="blank"),
            pytest.param("30", dt.timedelta(seconds=30), id="seconds"),
            pytest.param(" 0.5 ", dt.timedelta(milliseconds=500), id="fraction-with-spaces"),
            pytest.param("86400", dt.timedelta(days=1), id="a-day"),
            pytest.param("86400.5", dt.timedelta(days=1), id="over-a-day-is-a-day"),
            pytest.param("1e20", dt.timedelta(days=1), id="huge-is-a-day"),
            pytest.param("inf", dt.timedelta(days=1), id="infinite-is-a-day"),
        ],
    )
    def test_values(self, monkeypatch, raw, expected):
        if raw is None:
            monkeypatch.delenv("MLOPS_RETRY_DELAY_SECONDS", raising=False)
        else:
            monkeypatch.setenv("MLOPS_RETRY_DELAY_SECONDS", raw)
        assert settings.retry_delay() == expected

    @pytest.mark.parametrize(
        ("raw", "match"),
        [
            pytest.param("2m", r"MLOPS_RETRY_DELAY_SECONDS='2m' is not a number of seconds", id="unit"),
            pytest.param("0", r"MLOPS_RETRY_DELAY_SECONDS='0' must be a positive number of seconds", id="zero"),
            pytest.param("-5", r"MLOPS_RETRY_DELAY_SECONDS='-5' must be a positive", id="negative"),
            pytest.param("nan", r"MLOPS_RETRY_DELAY_SECONDS='nan' must be a positive", id="nan"),
        ],
    )
    def test_refusals_name_the_variable(self, monkeypatch, raw, match):
        monkeypatch.setenv("MLOPS_RETRY_DELAY_SECONDS", raw)
        with pytest.raises(ValueError, match=match):
            settings.retry_delay()


class TestOverrides:
    @pytest.mark.parametrize(
        ("read", "variable"),
        [
            pytest.param(settings.training_backend_override, "MLOPS_TRAINING_BACKEND", id="training-backend"),
            pytest.param(settings.serving_backend_override, "MLOPS_SERVING_BACKEND", id="serving-backend"),
            pytest.param(settings.code_version_override, "MLOPS_CODE_VERSION", id="code-version"),
        ],
    )
    def test_set_unset_and_empty(self, monkeypatch, read, variable):
        monkeypatch.delenv(variable, raising=False)
        assert read() is None
        monkeypatch.setenv(variable, "")
        assert read() is None
        monkeypatch.setenv(variable, "docker")
        assert read() == "docker"


class TestServing:
    def test_ports_come_from_the_mapping_given(self):
        environ = {"MLOPS_SERVING_LIVE_PORT": "9600", "MLOPS_SERVING_GREEN_PORT": "9602"}
        assert [settings.serving_port(key, environ) for key in ("live_port", "blue_port", "green_port")] == ["9600", None, "9602"]

    def test_ports_default_to_the_process_environment(self, monkeypatch):
        monkeypatch.setenv("MLOPS_SERVING_BLUE_PORT", "9701")
        assert settings.serving_port("blue_port") == "9701"

    def test_an_unknown_port_key_is_an_error(self):
        with pytest.raises(KeyError, match="admin_port"):
            settings.serving_port("admin_port", {})

    def test_state_dir(self, monkeypatch, tmp_path):
        monkeypatch.setenv("MLOPS_SERVING_STATE_DIR", str(tmp_path))
        assert settings.serving_state_dir() == tmp_path
        monkeypatch.setenv("MLOPS_SERVING_STATE_DIR", "")
        assert settings.serving_state_dir() == Path("/tmp/mlops-airflow/serving")


@pytest.mark.parametrize(
    ("tracking_uri", "explicit", "expected"),
    [
        pytest.param("http://mlflow:5000/", None, "http://mlflow:5000", id="the tracking server"),
        pytest.param("https://pipeline:s3cret@mlflow.example", None, "https://mlflow.example", id="never a password in a link"),
        pytest.param("sqlite:///mlflow.db", None, None, id="a database store has no UI"),
        pytest.param("http://mlflow.internal:5000", "https://mlflow.example.com/", "https://mlflow.example.com", id="the address people use"),
    ],
)
def test_the_mlflow_ui_address(monkeypatch, tracking_uri, explicit, expected):
    from mlops_airflow.settings import MLFLOW_UI_URL_ENV, mlflow_ui_url

    if explicit:
        monkeypatch.setenv(MLFLOW_UI_URL_ENV, explicit)
    else:
        monkeypatch.delenv(MLFLOW_UI_URL_ENV, raising=False)
    assert mlflow_ui_url(tracking_uri) == expected
