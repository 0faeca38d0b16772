"""ModelTrainingDockerOperator against a fake Docker Engine API client (no Docker engine here)."""

from __future__ import annotations

import io
import json
import tarfile
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from helpers import REPO_ROOT

from mlops_airflow.constants import TAG_REASON
from mlops_airflow.core.payloads import TrainingResult
from mlops_airflow.exceptions import TrackingServerUnavailableError, TrainingFailedError
from mlops_airflow.operators.training_docker import ModelTrainingDockerOperator

SPEC_PATH = REPO_ROOT / "include" / "models" / "churn.yaml"
RESULT = TrainingResult(
    run_id="r1", model_uri="models:/churn/7", version="7", registered_model_name="churn", window_start="2026-01-01", window_end="2026-01-29", metrics={}
).to_xcom()


class FakeDockerClient:
    """The calls DockerOperator makes, recorded; the container "writes" RESULT to its result file."""

    def __init__(self, exit_code: int = 0) -> None:
        self.calls: dict[str, dict] = {}
        self.exit_code = exit_code

    def images(self, name):
        return [{"Id": "sha256:abc"}]

    def create_host_config(self, **kwargs):
        self.calls["host_config"] = kwargs
        return kwargs

    def create_container(self, **kwargs):
        self.calls["create_container"] = kwargs
        return {"Id": "container-1"}

    def attach(self, **kwargs):
        return iter([b"training...\n", b"done\n"])

    def start(self, container_id):
        self.calls["start"] = {"id": container_id}

    def wait(self, container_id):
        return {"StatusCode": self.exit_code}

    def get_archive(self, container_id, path):
        self.calls["get_archive"] = {"path": path}
        data = json.dumps(RESULT).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("return.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return [buffer.getvalue()], {"name": "return.json", "size": len(data)}

    def inspect_container(self, container_id):
        return {"Id": container_id, "State": {"ExitCode": self.exit_code}}

    def remove_container(self, container_id, **kwargs):
        self.calls["remove_container"] = {"id": container_id}


@pytest.fixture
def fake_docker(monkeypatch):
    client = FakeDockerClient()
    monkeypatch.setattr(ModelTrainingDockerOperator, "cli", property(lambda self: client))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000, "login": "pipeline", "password": "canary-s3cret"})
    )
    return client


def make_operator(**overrides):
    kwargs = {
        "task_id": "train_model",
        "image": "mlops-airflow-trainer:0.1.0",
        "spec_path": str(SPEC_PATH),
        "window_start": "2026-01-01",
        "window_end": "2026-01-29",
        "gpus": 1,
    }
    return ModelTrainingDockerOperator(**{**kwargs, **overrides})


def test_runs_the_entrypoint_with_gpus_and_returns_the_result_file(fake_docker):
    operator = make_operator()
    result = operator.execute({"dag_run": SimpleNamespace(dag_id="retrain_churn", run_id="manual__1")})
    assert result == RESULT

    created = fake_docker.calls["create_container"]
    assert created["entrypoint"] == ["python"]
    assert created["command"][:2] == ["-m", "mlops_airflow.training"]
    assert created["command"][created["command"].index("--spec") + 1] == "env:MLOPS_MODEL_SPEC"
    assert created["user"] == "10001:10001"
    assert fake_docker.calls["get_archive"]["path"] == "/airflow/xcom/return.json"
    assert fake_docker.calls["remove_container"]["id"] == "container-1"

    host = fake_docker.calls["host_config"]
    (request,) = host["device_requests"]
    assert (request["Count"], request["Capabilities"]) == (1, [["gpu"]])
    assert host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges:true"]
    assert host["privileged"] is False

    env = created["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"  # no MLflow loader in the container reads pickle
    assert env["MLOPS_MODEL_SPEC"].startswith("# The demo model")
    # Credentials reach the container only as private environment: never rendered, never logged.
    assert env["MLFLOW_TRACKING_PASSWORD"] == "canary-s3cret"
    assert "MLFLOW_TRACKING_PASSWORD" not in operator.environment
    assert "canary-s3cret" not in json.dumps(operator.command)


def test_no_gpu_no_device_request(fake_docker):
    make_operator(gpus=0).execute({"dag_run": SimpleNamespace(dag_id="d", run_id="r")})
    assert fake_docker.calls["host_config"]["device_requests"] is None


@pytest.mark.parametrize(
    ("exit_code", "error"),
    [
        pytest.param(3, AirflowFailException, id="bad-data-no-retry"),
        pytest.param(2, AirflowFailException, id="bad-arguments-no-retry"),
        pytest.param(4, TrackingServerUnavailableError, id="tracking-down-retry"),
        pytest.param(1, TrainingFailedError, id="crash-retry"),
    ],
)
def test_the_exit_code_decides_whether_to_retry(fake_docker, exit_code, error):
    fake_docker.exit_code = exit_code
    with pytest.raises(error, match=f"exit {exit_code}"):
        make_operator().execute({"dag_run": SimpleNamespace(dag_id="d", run_id="r")})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("$(MLFLOW_TRACKING_PASSWORD) ${MLFLOW_TRACKING_PASSWORD} $$", id="variables"),
        pytest.param("`id`; $(echo hi) | tee /tmp/x && rm -rf / #'\"", id="shell-syntax"),
        pytest.param("['sh', '-c', 'id']", id="looks-like-a-list"),
        pytest.param("line one\nline two\r\n\ttab", id="newlines"),
        pytest.param("--window-start=1999-01-01", id="option-like"),
        pytest.param("x" * 10_000, id="10k-characters"),
    ],
)
def test_user_text_reaches_the_entrypoint_unchanged_and_no_shell_runs_it(fake_docker, text):
    """Exec form with python as the entrypoint: neither a shell nor an image's entrypoint script reads the text."""
    from mlops_airflow.training.__main__ import parse_args

    report_uri = f"s3://bucket/churn/_reports/{text}"
    make_operator(reason=text, data_report_uri=report_uri).execute({"dag_run": SimpleNamespace(dag_id="d", run_id="r")})
    created = fake_docker.calls["create_container"]
    assert created["entrypoint"] == ["python"]
    assert isinstance(created["command"], list)
    args = parse_args(created["command"][2:])
    assert dict(args.tag)[TAG_REASON] == text
    assert args.data_report == report_uri
