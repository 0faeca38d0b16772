"""The model server's command line: its argv, the environment defaults, and the refusal path (loading stubbed, no server started).

The refusal of a real pickled version is tested in tests/unit/core/test_model_loading.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_airflow.core.model_loading import PICKLE_ENV, UnsafeModelError
from mlops_airflow.serving import model_server
from mlops_airflow.serving.model_server import EXIT_REFUSED, main, server_command

HGB = "hist_gradient_boosting"


@pytest.fixture
def refusing_loader(monkeypatch):
    """``load`` replaced by one that notes what it was asked, and how, then refuses (so no server starts)."""
    asked: dict = {}

    def refuse(model_uri, estimator_kind, folder):
        asked.update(model_uri=model_uri, estimator_kind=estimator_kind, folder=Path(folder), folder_existed=Path(folder).is_dir())
        asked["pickle"] = os.environ.get(PICKLE_ENV)
        raise UnsafeModelError(f"{model_uri}: serialization_format 'cloudpickle'; only 'skops' is loaded")

    monkeypatch.setattr(model_server, "load", refuse)
    # main() switches pickle off in this (the test's) process: give monkeypatch a value to put back.
    monkeypatch.setenv(PICKLE_ENV, "true")
    for name in (model_server.MODEL_URI_ENV, model_server.ESTIMATOR_KIND_ENV):
        monkeypatch.delenv(name, raising=False)
    return asked


class TestServerCommand:
    def test_with_every_value(self):
        assert server_command("/venv/bin/python", model_uri="models:/churn/3", estimator_kind=HGB, host="0.0.0.0", port=8080) == [
            "/venv/bin/python", "-m", "mlops_airflow.serving.model_server", "--host", "0.0.0.0", "--port", "8080",
            "--model-uri", "models:/churn/3", "--estimator-kind", HGB,
        ]  # fmt: skip

    def test_none_leaves_a_value_to_the_environment(self):
        command = server_command("python", model_uri=None, estimator_kind=None, host="127.0.0.1", port=9000)
        assert command == ["python", "-m", "mlops_airflow.serving.model_server", "--host", "127.0.0.1", "--port", "9000"]

    def test_main_reads_back_what_the_command_says(self, refusing_loader):
        command = server_command("python", model_uri="models:/churn/3", estimator_kind=HGB, host="127.0.0.1", port=9000)
        assert main(command[3:]) == EXIT_REFUSED
        assert (refusing_loader["model_uri"], refusing_loader["estimator_kind"]) == ("models:/churn/3", HGB)


class TestMain:
    @pytest.mark.parametrize(
        ("argv", "environ", "expected"),
        [
            pytest.param(["--model-uri", "models:/churn/3", "--estimator-kind", HGB], {}, ("models:/churn/3", HGB), id="arguments"),
            pytest.param([], {"MODEL_URI": "models:/churn/4", "MODEL_ESTIMATOR_KIND": HGB}, ("models:/churn/4", HGB), id="environment"),
            pytest.param(
                ["--model-uri", "models:/churn/5"],
                {"MODEL_URI": "models:/churn/4", "MODEL_ESTIMATOR_KIND": "logistic_regression"},
                ("models:/churn/5", "logistic_regression"),
                id="arguments-win",
            ),
        ],
    )
    def test_the_model_uri_and_kind(self, refusing_loader, monkeypatch, argv, environ, expected):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        assert main(argv) == EXIT_REFUSED
        assert (refusing_loader["model_uri"], refusing_loader["estimator_kind"]) == expected

    @pytest.mark.parametrize(
        ("argv", "environ"),
        [
            pytest.param([], {}, id="neither"),
            pytest.param(["--model-uri", "models:/churn/3"], {}, id="no-kind"),
            pytest.param(["--estimator-kind", HGB], {"MODEL_URI": ""}, id="empty-uri-variable"),
        ],
    )
    def test_both_are_required(self, refusing_loader, monkeypatch, capsys, argv, environ):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "--model-uri and --estimator-kind (or MODEL_URI and MODEL_ESTIMATOR_KIND) are required" in capsys.readouterr().err
        assert refusing_loader == {}  # nothing was downloaded

    def test_a_port_that_is_not_a_number(self, refusing_loader, capsys):
        with pytest.raises(SystemExit):
            main(["--model-uri", "models:/churn/3", "--estimator-kind", HGB, "--port", "http"])
        assert "argument --port: invalid int value: 'http'" in capsys.readouterr().err

    def test_a_refused_version_exits_refused_with_the_reason(self, refusing_loader, capsys):
        assert main(["--model-uri", "models:/churn/3", "--estimator-kind", HGB]) == EXIT_REFUSED
        assert capsys.readouterr().err == "refusing to serve models:/churn/3: serialization_format 'cloudpickle'; only 'skops' is loaded\n"

    def test_the_version_is_loaded_with_pickle_off_into_a_folder_removed_afterwards(self, refusing_loader):
        main(["--model-uri", "models:/churn/3", "--estimator-kind", HGB])
        assert refusing_loader["pickle"] == "false"
        assert refusing_loader["folder_existed"] is True
        assert not refusing_loader["folder"].exists()
