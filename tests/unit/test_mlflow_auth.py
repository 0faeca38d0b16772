"""``python -m mlops_airflow.mlflow_auth setup``: arguments, secrets from the environment only, the guard first.

The setup itself (ensure_pipeline_identity) is replaced by a stand-in that returns its arguments as changes.
"""

from __future__ import annotations

import base64
import json

import pytest
from fake_http import FakeServer, JsonHandler

from mlops_airflow import mlflow_auth as cli
from mlops_airflow.hooks import mlflow_auth as hook

ENV = {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-secret", "MLOPS_MLFLOW_PIPELINE_PASSWORD": "pipeline-secret"}
OPTIONAL = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLOPS_MLFLOW_PIPELINE_USER")


@pytest.fixture
def environ(monkeypatch):
    """The environment main() reads, set to ENV; a test changes it through the returned monkeypatch."""
    for name in OPTIONAL:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(hook, "_checked", set())
    return monkeypatch


@pytest.fixture
def setups(monkeypatch):
    """Each call of the setup, its arguments; it reports one change per model."""
    calls: list[dict] = []

    def ensure(tracking_uri, **kwargs):
        calls.append({"tracking_uri": tracking_uri, **kwargs, "models": list(kwargs["models"])})
        return [f"granted EDIT on registered_model {model}" for model in kwargs["models"]]

    monkeypatch.setattr(cli, "ensure_pipeline_identity", ensure)
    return calls


def run(argv, capsys) -> dict:
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


class TestMain:
    def test_defaults(self, environ, setups, capsys):
        assert run(["setup"], capsys) == {"changes": ["granted EDIT on registered_model churn"]}
        assert setups == [
            {
                "tracking_uri": "sqlite:///mlflow.db",
                "admin_username": "admin",
                "admin_password": "admin-secret",
                "username": "mlops-pipeline",
                "password": "pipeline-secret",
                "models": ["churn"],  # every spec's, from $MLOPS_SPECS_DIR (include/models)
            }
        ]

    def test_names_from_the_environment_and_models_and_uri_from_arguments(self, environ, setups, capsys):
        environ.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "root")
        environ.setenv("MLOPS_MLFLOW_PIPELINE_USER", "airflow")
        run(["setup", "--tracking-uri", "sqlite:///other.db", "--models", "fraud", "churn"], capsys)
        (call,) = setups
        assert (call["tracking_uri"], call["admin_username"], call["username"], call["models"]) == ("sqlite:///other.db", "root", "airflow", ["fraud", "churn"])

    def test_models_with_no_names_sets_up_the_user_only(self, environ, setups, capsys):
        assert run(["setup", "--models"], capsys) == {"changes": []}
        assert setups[0]["models"] == []

    @pytest.mark.parametrize(
        ("unset", "message"),
        [
            pytest.param(["MLFLOW_AUTH_ADMIN_PASSWORD"], "set MLFLOW_AUTH_ADMIN_PASSWORD in the environment", id="admin-password"),
            pytest.param(["MLOPS_MLFLOW_PIPELINE_PASSWORD"], "set MLOPS_MLFLOW_PIPELINE_PASSWORD in the environment", id="pipeline-password"),
            pytest.param(
                ["MLFLOW_AUTH_ADMIN_PASSWORD", "MLOPS_MLFLOW_PIPELINE_PASSWORD"],
                "set MLFLOW_AUTH_ADMIN_PASSWORD, MLOPS_MLFLOW_PIPELINE_PASSWORD in the environment",
                id="both-passwords",
            ),
            pytest.param(["MLFLOW_TRACKING_URI"], "set MLFLOW_TRACKING_URI in the environment", id="tracking-uri"),
        ],
    )
    def test_missing_settings_are_named(self, environ, setups, capsys, unset, message):
        for name in unset:
            environ.setenv(name, "") if name != "MLFLOW_TRACKING_URI" else environ.delenv(name)
        with pytest.raises(SystemExit) as exited:
            cli.main(["setup"])
        assert exited.value.code == 2
        assert message in capsys.readouterr().err
        assert setups == []

    @pytest.mark.parametrize(
        "argv",
        [
            pytest.param(["setup", "--admin-password", "x"], id="admin-password"),
            pytest.param(["setup", "--password", "x"], id="password"),
        ],
    )
    def test_passwords_are_not_taken_from_arguments(self, environ, setups, capsys, argv):
        """Process lists show argv."""
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert "unrecognized arguments" in capsys.readouterr().err
        assert setups == []

    def test_only_the_setup_command(self, environ, setups, capsys):
        with pytest.raises(SystemExit):
            cli.main(["teardown"])
        assert "invalid choice: 'teardown'" in capsys.readouterr().err

    def test_a_server_with_the_default_admin_password_is_refused_before_any_setup(self, environ, setups):
        class Legacy(JsonHandler):
            def do_GET(self):
                default = "Basic " + base64.b64encode(b"admin:password1234").decode()
                self.reply(200 if self.headers.get("Authorization") == default else 401)

        with FakeServer(Legacy) as server, pytest.raises(hook.InsecureMlflowServerError, match="still accepts MLflow's default password"):
            cli.main(["setup", "--tracking-uri", server.url])
        assert setups == []
