"""``python -m mlops_airflow.training``: what the entrypoint refuses before it trains, and with which exit code."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import CHURN_SPEC

from mlops_airflow.constants import TRAINING_PARENT_PID_ENV, TrainingExitCode
from mlops_airflow.training.__main__ import DEFAULT_RESULT_PATH, main, parse_args

WINDOW = ["--window-start", "2026-01-01", "--window-end", "2026-01-29"]


class TestParseArgs:
    def test_defaults_and_tags(self):
        args = parse_args(["--spec", "churn.yaml", *WINDOW, "--tag", "query=a=b", "--tag", "empty="])
        assert (args.spec, args.window_start, args.window_end) == ("churn.yaml", dt.date(2026, 1, 1), dt.date(2026, 1, 29))
        assert args.tag == [("query", "a=b"), ("empty", "")]  # split at the first "=", a value may be empty
        assert (args.result_path, args.idempotency_key, args.data_report) == (DEFAULT_RESULT_PATH, None, None)

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            pytest.param(WINDOW, "the following arguments are required: --spec", id="no-spec"),
            pytest.param(["--spec", "x.yaml", "--window-end", "2026-01-29"], "the following arguments are required: --window-start", id="no-start"),
            pytest.param(["--spec", "x.yaml", "--window-start", "2026-01-01"], "the following arguments are required: --window-end", id="no-end"),
            pytest.param(["--spec", "x.yaml", "--window-start", "2026-01-01", "--window-end", "2026-01-01"], "must be after", id="empty-window"),
            pytest.param(["--spec", "x.yaml", "--window-start", "2026-01-01", "--window-end", "2026-02-30"], "expected a date", id="impossible-end"),
            pytest.param(["--spec", "x.yaml", *WINDOW, "--tag", "=value"], "KEY=VALUE", id="tag-without-key"),
            pytest.param(["--spec", "x.yaml", *WINDOW, "--epochs", "3"], "unrecognized arguments: --epochs", id="unknown-option"),
        ],
    )
    def test_bad_arguments_exit_2(self, argv, message, capsys):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == TrainingExitCode.BAD_ARGUMENTS
        assert message in capsys.readouterr().err


@pytest.fixture
def no_training(tmp_path, monkeypatch):
    """A tracking URI that is never contacted, and a ``train`` that fails the test if the entrypoint gets that far."""
    from mlops_airflow.training import train as train_module

    def trained(request):
        raise AssertionError(f"the entrypoint trained {request.spec.name} instead of refusing its input")

    monkeypatch.setattr(train_module, "train", trained)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'never-created.db'}")
    monkeypatch.delenv(TRAINING_PARENT_PID_ENV, raising=False)  # exit_with_parent would end this test process


class TestSpecInput:
    @pytest.mark.parametrize(
        ("spec", "environ", "message"),
        [
            pytest.param("{tmp}/churn.yaml", {}, "churn.yaml: <file>: cannot be read", id="no-file"),
            pytest.param("{tmp}/other.yaml", {}, "other.yaml: name: must match the file name 'other'", id="file-name-not-model-name"),
            pytest.param("env:MODEL_SPEC_YAML", {}, "--spec env:MODEL_SPEC_YAML: environment variable MODEL_SPEC_YAML is empty or not set", id="env-unset"),
            pytest.param("env:MODEL_SPEC_YAML", {"MODEL_SPEC_YAML": ""}, "environment variable MODEL_SPEC_YAML is empty or not set", id="env-empty"),
            pytest.param("env:", {}, "is empty or not set", id="env-without-name"),
            pytest.param("env:MODEL_SPEC_YAML", {"MODEL_SPEC_YAML": "name: [unclosed\n"}, "env:MODEL_SPEC_YAML: <file>: is not valid YAML", id="env-not-yaml"),
            pytest.param("env:MODEL_SPEC_YAML", {"MODEL_SPEC_YAML": "name: churn\n"}, "env:MODEL_SPEC_YAML: data: is required", id="env-not-a-spec"),
        ],
    )
    def test_a_spec_that_cannot_be_loaded_is_refused(self, no_training, tmp_path, monkeypatch, capsys, spec, environ, message):
        (tmp_path / "other.yaml").write_text(CHURN_SPEC.read_text())
        monkeypatch.delenv("MODEL_SPEC_YAML", raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        result = tmp_path / "r.json"
        assert main(["--spec", spec.format(tmp=tmp_path), *WINDOW, "--result-path", str(result)]) == TrainingExitCode.BAD_ARGUMENTS
        assert message in capsys.readouterr().err
        assert not result.exists()

    def test_the_tracking_uri_is_checked_before_the_spec(self, no_training, tmp_path, monkeypatch, capsys):
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        assert main(["--spec", str(tmp_path / "churn.yaml"), *WINDOW, "--result-path", str(tmp_path / "r.json")]) == TrainingExitCode.BAD_ARGUMENTS
        err = capsys.readouterr().err
        assert "MLFLOW_TRACKING_URI is not set" in err
        assert "cannot be read" not in err
