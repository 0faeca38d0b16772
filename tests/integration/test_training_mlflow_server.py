"""The local training backend end to end against a real MLflow server on loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from helpers import DATA_DAYS, DATA_END

pytestmark = pytest.mark.integration


def test_local_backend_against_a_real_server(churn_data, small_spec_file, mlflow_server, tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    start = DATA_END - dt.timedelta(days=DATA_DAYS)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_REGISTRY_URI": mlflow_server}
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
