"""mlops_airflow.embedded.config: the stack's settings from the environment, and what its processes inherit."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_airflow.embedded.config import StackConfig, inherited_env
from mlops_airflow.serving.local_ports import LocalPorts


class TestStackConfig:
    def test_from_env_defaults_live_under_the_checkout(self, tmp_path):
        config = StackConfig.from_env(repo_root=tmp_path, environ={})
        assert config.repo_root == tmp_path.resolve()
        assert config.state_dir == tmp_path.resolve() / ".local"
        ports = (config.airflow_port, config.mlflow_port, config.worker_log_port, config.trigger_log_port, config.statsd_port)
        assert ports == (8080, 5500, 8793, 8794, 8125)
        assert config.serving_ports == LocalPorts(8500, 8501, 8502)
        assert config.database == "postgres"
        assert (config.airflow_url, config.mlflow_url) == ("http://127.0.0.1:8080", "http://127.0.0.1:5500")

    def test_from_env_reads_every_setting(self, tmp_path):
        environ = {
            "MLOPS_STATE_DIR": str(tmp_path / "elsewhere" / ".." / "state"),
            "MLOPS_AIRFLOW_PORT": "18080",
            "MLOPS_MLFLOW_PORT": "15500",
            "MLOPS_WORKER_LOG_PORT": "18793",
            "MLOPS_TRIGGER_LOG_PORT": "18794",
            "MLOPS_STATSD_PORT": "18125",
            "MLOPS_SERVING_LIVE_PORT": "9100",
            "MLOPS_SERVING_BLUE_PORT": "9101",
            "MLOPS_SERVING_GREEN_PORT": "9102",
            "MLOPS_EMBEDDED_DATABASE": "sqlite",
        }
        config = StackConfig.from_env(repo_root=tmp_path, environ=environ)
        assert config.state_dir == tmp_path.resolve() / "state"  # resolved: `down` matches processes by this marker
        assert config.marker == str(tmp_path.resolve() / "state")
        ports = (config.airflow_port, config.mlflow_port, config.worker_log_port, config.trigger_log_port, config.statsd_port)
        assert ports == (18080, 15500, 18793, 18794, 18125)
        assert config.serving_ports == LocalPorts(9100, 9101, 9102)
        assert config.database == "sqlite"
        assert config.airflow_url == "http://127.0.0.1:18080"

    def test_from_env_reads_the_process_environment_by_default(self, tmp_path, monkeypatch):
        monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("MLOPS_MLFLOW_PORT", "15501")
        monkeypatch.chdir(tmp_path)
        config = StackConfig.from_env()
        assert (config.repo_root, config.state_dir, config.mlflow_port) == (tmp_path.resolve(), tmp_path.resolve() / "state", 15501)

    def test_an_empty_state_dir_means_unset(self, tmp_path, monkeypatch):
        """Not the current directory: `down` would match any process started there."""
        monkeypatch.chdir(tmp_path)
        config = StackConfig.from_env(repo_root=tmp_path / "repo", environ={"MLOPS_STATE_DIR": ""})
        assert config.state_dir == tmp_path.resolve() / "repo" / ".local"

    def test_from_env_refuses_an_unknown_database(self, tmp_path):
        with pytest.raises(ValueError, match="MLOPS_EMBEDDED_DATABASE='mysql' is not one of postgres, sqlite"):
            StackConfig.from_env(repo_root=tmp_path, environ={"MLOPS_EMBEDDED_DATABASE": "mysql"})

    def test_folders_sit_under_the_state_dir(self, tmp_path):
        config = StackConfig(repo_root=tmp_path, state_dir=tmp_path / "s")
        folders = (config.serving_dir, config.airflow_home, config.mlflow_dir, config.data_root, config.specs_dir, config.log_dir)
        assert [p.relative_to(tmp_path / "s") for p in folders] == [Path(n) for n in ("serving", "airflow", "mlflow", "data", "models", "logs")]

    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            pytest.param(None, None, id="no-file"),
            pytest.param('{"admin": "s3cret"}', "s3cret", id="written-by-airflow"),
            pytest.param("{not json", None, id="not-json"),
            pytest.param('{"viewer": "x"}', None, id="no-admin"),
        ],
    )
    def test_admin_password(self, tmp_path, content, expected):
        config = StackConfig(repo_root=tmp_path, state_dir=tmp_path / "s")
        if content is not None:
            config.admin_password_file.parent.mkdir(parents=True)
            config.admin_password_file.write_text(content)
        assert config.admin_password() == expected


class TestInheritedEnv:
    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("AIRFLOW_HOME", id="airflow-home"),
            pytest.param("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", id="metadata-db"),
            pytest.param("AIRFLOW__CORE__UNIT_TEST_MODE", id="unit-test-mode"),
            pytest.param("AIRFLOW_CONN_MLFLOW_DEFAULT", id="connection"),
            pytest.param("MLFLOW_TRACKING_URI", id="tracking-uri"),
            pytest.param("MLFLOW_TRACKING_PASSWORD", id="tracking-password"),
            pytest.param("MLOPS_STACK_OWNER_PID", id="owner-pid"),
        ],
    )
    def test_drops_settings_of_another_airflow_or_mlflow(self, monkeypatch, name):
        monkeypatch.setenv(name, "someone-elses")
        assert name not in inherited_env()

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("PATH", id="path"),
            pytest.param("AIRFLOW__CORE__DAGS_FOLDER", id="other-airflow-setting"),
            pytest.param("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", id="other-mlflow-setting"),
            pytest.param("MLOPS_DATA_ROOT", id="mlops-setting"),
        ],
    )
    def test_keeps_the_rest(self, monkeypatch, name):
        monkeypatch.setenv(name, "kept")
        assert inherited_env()[name] == "kept"
