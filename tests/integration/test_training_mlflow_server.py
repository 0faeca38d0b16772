"""The local training backend end to end against a real MLflow server on loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import DATA_DAYS, DATA_END

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_server(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("mlflow server did not start")
    yield url
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


def test_local_backend_against_a_real_server(churn_data, small_spec_file, mlflow_server, tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    start = DATA_END - dt.timedelta(days=DATA_DAYS)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    argv = [
        sys.executable, "-m", "mlops_airflow.training", "--spec", str(small_spec_file),
        "--window-start", str(start), "--window-end", str(DATA_END),
        "--result-path", str(tmp_path / "xcom" / "return.json"), "--idempotency-key", "retrain_churn/manual__1",
    ]  # fmt: skip
    completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "xcom" / "return.json").read_text())

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = MlflowClient(tracking_uri=mlflow_server)
    challenger = client.get_model_version_by_alias("churn", "challenger")
    assert str(challenger.version) == result["version"]
    run = client.get_run(result["run_id"])
    assert run.inputs.dataset_inputs[0].dataset.digest == run.data.params["dataset.digest"]
    assert run.data.tags["mlops.idempotency_key"] == "retrain_churn/manual__1"
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="reference/features.parquet", tracking_uri=mlflow_server)
    )
    assert len(reference) == 500
    model = mlflow.pyfunc.load_model("models:/churn@challenger")
    assert model.predict(reference.head(4)).shape == (4, 2)
