"""The training entrypoint, run in-process against a real MLflow store (SQLite + local artifacts)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from helpers import DATA_DAYS, DATA_END, free_port

from mlops_airflow.constants import CHALLENGER_ALIAS, DATA_REPORT_ARTIFACT, REFERENCE_SAMPLE_ARTIFACT, TAG_REASON, VALIDATION_SCORES_ARTIFACT, TrainingExitCode
from mlops_airflow.training.__main__ import main
from mlops_airflow.training.train import TAG_VALUE_MAX_CHARS, TrainingError, checked_data_report


def train_args(spec_file, result_path, *extra, start=None, end=DATA_END):
    start = start or (end - dt.timedelta(days=DATA_DAYS))
    return ["--spec", str(spec_file), "--window-start", str(start), "--window-end", str(end), "--result-path", str(result_path), *extra]


def spec_segments(spec_file) -> list[str]:
    from mlops_airflow.specs import load_spec

    return list(load_spec(spec_file).promotion.segments)


@pytest.fixture
def client(mlflow_store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)


class TestTraining:
    def test_trains_logs_and_registers_challenger(self, churn_data, small_spec_file, client, tmp_path):
        result_path = tmp_path / "xcom" / "return.json"
        assert main(train_args(small_spec_file, result_path, "--idempotency-key", "dag/run-1", "--tag", "team=ml")) == 0

        result = json.loads(result_path.read_text())
        assert result["version"] == "1"
        assert result["model_uri"] == "models:/churn/1"
        assert str(client.get_model_version_by_alias("churn", CHALLENGER_ALIAS).version) == "1"

        run = client.get_run(result["run_id"])
        assert run.data.params["estimator"] == "hist_gradient_boosting"
        assert run.data.params["window_end"] == str(DATA_END)
        assert run.data.tags["team"] == "ml"
        assert run.data.tags["mlops.idempotency_key"] == "dag/run-1"
        assert run.data.tags["mlops.code_version"]
        assert 0.5 < run.data.metrics["roc_auc"] <= 1.0
        assert run.data.metrics["validation_rows"] == 5 * 300
        assert run.data.metrics["train_rows"] == (DATA_DAYS - 5) * 300
        # Dataset lineage: digest, source and window.
        (dataset_input,) = run.inputs.dataset_inputs
        assert dataset_input.dataset.source
        assert "churn/events" in dataset_input.dataset.source
        assert run.data.params["dataset.digest"] == dataset_input.dataset.digest

        import mlflow

        reference = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path=REFERENCE_SAMPLE_ARTIFACT))
        assert len(reference) == 500
        assert list(reference.columns)[:2] == ["tenure_months", "monthly_charges"]
        # The validation rows as the model scored them: the performance monitor's baseline and calibration.
        scores = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path=VALIDATION_SCORES_ARTIFACT))
        assert list(scores.columns) == ["label", "probability_0", "probability_1", *spec_segments(small_spec_file)]
        assert len(scores) == 5 * 300
        assert scores[["probability_0", "probability_1"]].sum(axis=1).round(9).eq(1.0).all()
        from mlops_airflow.stats.classification import score

        assert score("roc_auc", scores["label"].to_numpy(), scores[["probability_0", "probability_1"]].to_numpy()) == pytest.approx(run.data.metrics["roc_auc"])

        model = mlflow.pyfunc.load_model(result["model_uri"])
        assert model.metadata.signature is not None
        probabilities = model.predict(reference.head(3))
        assert probabilities.shape == (3, 2)

    def test_retry_with_the_same_key_reuses_the_run(self, churn_data, small_spec_file, client, tmp_path):
        first, second = tmp_path / "a.json", tmp_path / "b.json"
        assert main(train_args(small_spec_file, first, "--idempotency-key", "dag/run-7")) == 0
        assert main(train_args(small_spec_file, second, "--idempotency-key", "dag/run-7")) == 0
        assert json.loads(second.read_text())["reused"] is True
        assert json.loads(second.read_text())["version"] == json.loads(first.read_text())["version"]
        assert len(client.search_model_versions("name = 'churn'")) == 1

    def test_a_try_killed_after_registering_is_reused_not_retrained(self, churn_data, small_spec_file, client, tmp_path):
        """The killed try's run stayed RUNNING, but its version exists: the retry reuses it and ends the run."""
        first, second = tmp_path / "a.json", tmp_path / "b.json"
        assert main(train_args(small_spec_file, first, "--idempotency-key", "dag/run-9")) == 0
        run_id = json.loads(first.read_text())["run_id"]
        client.update_run(run_id, status="RUNNING")  # as a SIGKILL between register and end_run leaves it
        assert main(train_args(small_spec_file, second, "--idempotency-key", "dag/run-9")) == 0
        assert json.loads(second.read_text())["reused"] is True
        assert len(client.search_model_versions("name = 'churn'")) == 1
        assert client.get_run(run_id).info.status == "FINISHED"

    def test_same_data_and_seed_give_the_same_model_metrics(self, churn_data, small_spec_file, client, tmp_path):
        assert main(train_args(small_spec_file, tmp_path / "a.json", "--idempotency-key", "a")) == 0
        assert main(train_args(small_spec_file, tmp_path / "b.json", "--idempotency-key", "b")) == 0
        a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
        assert a["version"] != b["version"]
        assert a["metrics"] == b["metrics"]


class TestBadInput:
    def test_no_partitions_in_window(self, churn_data, small_spec_file, mlflow_store, tmp_path, capsys):
        code = main(train_args(small_spec_file, tmp_path / "r.json", start="2020-01-01", end="2020-01-20"))
        assert code == TrainingExitCode.BAD_DATA
        assert "no partitions under" in capsys.readouterr().err
        assert not (tmp_path / "r.json").exists()

    def test_label_outside_classes(self, churn_data, small_spec_file, mlflow_store, tmp_path, capsys):
        import yaml

        raw = yaml.safe_load(small_spec_file.read_text())
        raw["target"]["classes"] = [0, 2]
        small_spec_file.write_text(yaml.safe_dump(raw))
        assert main(train_args(small_spec_file, tmp_path / "r.json")) == TrainingExitCode.BAD_DATA
        assert "outside the classes [0, 2]" in capsys.readouterr().err

    def test_unknown_estimator_param(self, churn_data, small_spec_file, mlflow_store, tmp_path, capsys):
        import yaml

        raw = yaml.safe_load(small_spec_file.read_text())
        raw["training"]["estimator"]["params"] = {"max_iterations": 3}
        small_spec_file.write_text(yaml.safe_dump(raw))
        assert main(train_args(small_spec_file, tmp_path / "r.json")) == TrainingExitCode.BAD_ARGUMENTS
        assert "training.estimator.params" in capsys.readouterr().err

    def test_invalid_spec(self, tmp_path, mlflow_store, capsys):
        (tmp_path / "churn.yaml").write_text("name: churn\n")
        assert main(train_args(tmp_path / "churn.yaml", tmp_path / "r.json")) == TrainingExitCode.BAD_ARGUMENTS
        assert "data: is required" in capsys.readouterr().err

    def test_missing_tracking_uri(self, small_spec_file, tmp_path, monkeypatch, capsys):
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(train_args(small_spec_file, tmp_path / "r.json")) == TrainingExitCode.BAD_ARGUMENTS
        assert "MLFLOW_TRACKING_URI is not set" in capsys.readouterr().err

    def test_unreachable_tracking_server(self, small_spec_file, tmp_path, monkeypatch, capsys):
        port = free_port()  # nothing listens there
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        assert main(train_args(small_spec_file, tmp_path / "r.json")) == TrainingExitCode.TRACKING_UNREACHABLE
        assert f"cannot reach MLflow at http://127.0.0.1:{port}" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            pytest.param(["--window-start", "2026-02-01", "--window-end", "2026-01-01"], "must be after", id="reversed-window"),
            pytest.param(["--window-start", "yesterday", "--window-end", "2026-01-01"], "expected a date", id="bad-date"),
            pytest.param(["--window-start", "2026-01-01", "--window-end", "2026-02-01", "--tag", "novalue"], "KEY=VALUE", id="bad-tag"),
        ],
    )
    def test_bad_arguments_exit_2(self, argv, message, capsys):
        with pytest.raises(SystemExit) as info:
            main(["--spec", "x.yaml", *argv])
        assert info.value.code == TrainingExitCode.BAD_ARGUMENTS
        assert message in capsys.readouterr().err


class TestUserText:
    """Reasons and tags from Params, and the data report URI from XCom, as the trainer takes them."""

    def test_tags_are_written_verbatim_a_long_reason_is_cut_short_and_the_report_is_logged(self, churn_data, small_spec_file, client, tmp_path):
        from mlops_airflow.specs import load_spec

        hostile = {
            "test.secret": "$(MLFLOW_TRACKING_PASSWORD) $$(X) ${HOME}",
            "test.shell": "`id`; $(echo hi) && rm -rf / #'\"",
            "test.lines": "one\ntwo\r\n\tthree",
            "test.unicode": "$\u00e9 \u00fcn\u00efc\u00f6d\u00e9 \u20ac",
        }
        reason = "why " * 2500  # 10,000 characters: MLflow refuses a tag value over 8,000
        reports_root = load_spec(small_spec_file).data.reports_uri.removeprefix("file://")
        report = Path(reports_root) / "retrain_churn" / tmp_path.name / "check_training_data.json"
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps({"rows": 42, "rules_failed": 0}))
        tags = [arg for key, value in {**hostile, TAG_REASON: reason}.items() for arg in ("--tag", f"{key}={value}")]
        result_path = tmp_path / "r.json"
        assert main(train_args(small_spec_file, result_path, "--data-report", f"file://{report}", *tags)) == 0

        run = client.get_run(json.loads(result_path.read_text())["run_id"])
        for key, value in hostile.items():
            assert run.data.tags[key] == value
        assert len(run.data.tags[TAG_REASON]) == TAG_VALUE_MAX_CHARS
        assert run.data.tags[TAG_REASON].startswith(reason[:4000])
        assert run.data.tags[TAG_REASON].endswith("[truncated]")
        assert run.data.metrics["data_check.rows"] == 42
        assert DATA_REPORT_ARTIFACT in {a.path for a in client.list_artifacts(run.info.run_id, "data_check")}

    def test_a_forged_report_outside_the_reports_root_is_refused_before_training(self, churn_data, small_spec_file, client, tmp_path, capsys):
        forged = tmp_path / "not-a-report.json"
        forged.write_text(json.dumps({"rows": 1, "secret": "anything JSON on the worker"}))
        code = main(train_args(small_spec_file, tmp_path / "r.json", "--data-report", f"file://{forged}"))
        assert code == TrainingExitCode.BAD_ARGUMENTS
        assert f"--data-report 'file://{forged}' refused" in capsys.readouterr().err
        assert not (tmp_path / "r.json").exists()
        assert client.search_model_versions("name = 'churn'") == []


class TestCheckedDataReport:
    @pytest.fixture
    def reports(self, tmp_path):
        root = tmp_path / "data" / "_reports"
        (root / "retrain_churn" / "run").mkdir(parents=True)
        (root / "retrain_churn" / "run" / "check.json").write_text("{}")
        (tmp_path / "outside").mkdir()
        (tmp_path / "outside" / "secret.json").write_text("{}")
        (root / "link.json").symlink_to(tmp_path / "outside" / "secret.json")
        (root / "linked-folder").symlink_to(tmp_path / "outside")
        return root

    def test_a_report_under_the_root_is_read_from_its_resolved_path(self, reports):
        report = reports / "retrain_churn" / "run" / "check.json"
        assert checked_data_report(f"file://{report}", f"file://{reports}") == str(report.resolve())
        assert checked_data_report(str(report), f"file://{reports}") == str(report.resolve())

    @pytest.mark.parametrize(
        "forged",
        [
            pytest.param("file://{tmp}/outside/secret.json", id="outside"),
            pytest.param("{tmp}/outside/secret.json", id="plain-path-outside"),
            pytest.param("file://{root}/../../outside/secret.json", id="dot-dot"),
            pytest.param("file://{root}/%2e%2e/%2e%2e/outside/secret.json", id="encoded-dot-dot"),
            pytest.param("file://{root}/link.json", id="symlink-to-a-file-outside"),
            pytest.param("file://{root}/linked-folder/secret.json", id="symlinked-folder"),
            pytest.param("file://{root}-evil/x.json", id="sibling-with-the-root-as-prefix"),
            pytest.param("file://{root}", id="the-root-itself"),
            pytest.param("file://elsewhere{root}/retrain_churn/run/check.json", id="another-host"),
            pytest.param("s3://bucket{root}/retrain_churn/run/check.json", id="another-scheme"),
        ],
    )
    def test_a_local_report_outside_the_root_is_refused(self, reports, tmp_path, forged):
        uri = forged.format(tmp=tmp_path, root=reports)
        with pytest.raises(TrainingError, match="refused") as info:
            checked_data_report(uri, f"file://{reports}")
        assert info.value.exit_code == TrainingExitCode.BAD_ARGUMENTS
        assert repr(uri) in str(info.value)

    def test_a_report_on_object_storage_under_the_root_passes_unchanged(self):
        uri = "s3://bucket/churn/_reports/retrain_churn/manual__2026-01-01T00_00_00_00_00/check_training_data.json"
        assert checked_data_report(uri, "s3://bucket/churn/_reports") == uri

    @pytest.mark.parametrize(
        "forged",
        [
            pytest.param("s3://other-bucket/churn/_reports/x.json", id="another-bucket"),
            pytest.param("s3://bucket/churn/_reports/../secrets/x.json", id="dot-dot"),
            pytest.param("s3://bucket/churn/_reports/%2E%2E/secrets/x.json", id="encoded-dot-dot"),
            pytest.param("s3://bucket/churn/_reports/./x.json", id="dot"),
            pytest.param("s3://bucket/churn/_reports-evil/x.json", id="sibling-with-the-root-as-prefix"),
            pytest.param("s3://bucket/churn/_reports/x.json?endpoint_override=attacker.example", id="query"),
            pytest.param("s3://bucket/churn/_reports/x.json#fragment", id="fragment"),
            pytest.param("gs://bucket/churn/_reports/x.json", id="another-scheme"),
            pytest.param("file:///churn/_reports/x.json", id="local-file"),
        ],
    )
    def test_an_object_storage_report_outside_the_root_is_refused(self, forged):
        with pytest.raises(TrainingError, match="refused") as info:
            checked_data_report(forged, "s3://bucket/churn/_reports")
        assert repr(forged) in str(info.value)


def test_spec_from_the_environment(churn_data, small_spec_file, mlflow_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_SPEC_YAML", small_spec_file.read_text())
    assert main(train_args("env:MODEL_SPEC_YAML", tmp_path / "r.json")) == 0
    assert json.loads((tmp_path / "r.json").read_text())["version"] == "1"
    assert main(train_args("env:NOT_SET_ANYWHERE", tmp_path / "r.json")) == TrainingExitCode.BAD_ARGUMENTS
    assert "NOT_SET_ANYWHERE is empty or not set" in capsys.readouterr().err


def test_the_entrypoint_ends_when_its_task_process_is_gone(tmp_path):
    """exit_with_parent: the child of a killed parent exits by itself instead of training on."""
    import subprocess
    import sys
    import time

    script = (
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import os, time; from mlops_airflow.training.__main__ import exit_with_parent; "
        "exit_with_parent(os.getppid(), poll=0.05); print(os.getpid(), flush=True); time.sleep(60)'], stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "os._exit(0)\n"  # the parent dies at once, leaving its child behind
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    orphan = int(parent.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(orphan, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(orphan, 9)
    pytest.fail("the orphaned entrypoint kept running after its parent died")
