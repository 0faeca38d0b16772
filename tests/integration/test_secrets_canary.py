"""A canary secret in every connection the DAGs use must surface nowhere it could be read.

The connections ``mlflow_default``, ``airflow_api`` and ``mlops_alerts`` carry canary
passwords. The model DAGs run with ``dag.test()`` against a real MLflow store, the local
serving backend, a fake Airflow REST API (for the backfill) and a fake alert webhook (for
a run that fails on purpose). Then every place a secret could leak is searched: the task
logs (everything written to stdout, stderr and the log handlers), XCom values, rendered
template fields, DAG run confs, the training pod's spec, MLflow tags, params and
artifacts, and every file the run left on disk. The positive controls check that the
canaries did reach the services they are for, so the search is not vacuous.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_airflow_api import FakeAirflowApi
from fake_http import FakeWebhook
from helpers import (
    CHURN_SPEC,
    DATA_DAYS,
    DATA_END,
    DRIFT_START,
    REPO_ROOT,
    delete_dag_runs,
    register_champion_with_reference,
    task_states,
    write_drift_data,
    write_drift_spec,
)

pytestmark = pytest.mark.integration

CANARY = "CANARY-d41d8cd98f"
SECRETS = {conn: f"{CANARY}-{conn}" for conn in ("mlflow_default", "airflow_api", "mlops_alerts")}
MONITOR_TASKS = ("wait_for_current_data", "check_current_data", "detect_drift", "decide_retrain", "trigger_retrain", "render_drift_report")


@pytest.fixture
def canary_connections(monkeypatch, mlflow_store):
    """Airflow's REST API (for the backfill) and an alert webhook, each with its canary; both record what they were sent."""
    with FakeAirflowApi(login="admin", password=SECRETS["airflow_api"]) as api, FakeWebhook("ok") as webhook:
        connections = {
            "mlflow_default": json.dumps(
                {"conn_type": "http", "login": "mlops-pipeline", "password": SECRETS["mlflow_default"], "extra": {"tracking_uri": mlflow_store}}
            ),
            "airflow_api": api.connection(),
            "mlops_alerts": json.dumps({"conn_type": "http", "host": f"{webhook.url}/hooks/alerts", "password": SECRETS["mlops_alerts"]}),
        }
        for conn_id, connection in connections.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection)
        yield SimpleNamespace(api=api, webhook=webhook)


def run(dagbag, dag_id: str, conf: dict):
    dag_run = dagbag.dags[dag_id].test(run_conf=conf, logical_date=dt.datetime.combine(DATA_END, dt.time(), tzinfo=dt.UTC))
    return str(getattr(dag_run.state, "value", dag_run.state)), task_states(dag_run), dag_run.run_id


def metadata_rows(dag_ids: set[str]) -> dict[str, list[str]]:
    """XCom values, rendered template fields and run confs of these DAGs, as text."""
    from airflow.models import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            "xcom": [f"{x.dag_id}.{x.task_id}.{x.key}={x.value!r}" for x in session.query(XComModel).filter(XComModel.dag_id.in_(dag_ids))],
            "rendered": [
                f"{r.dag_id}.{r.task_id}={json.dumps(r.rendered_fields, default=str)}"
                for r in session.query(RenderedTaskInstanceFields).filter(RenderedTaskInstanceFields.dag_id.in_(dag_ids))
            ],
            "conf": [f"{r.dag_id}={json.dumps(r.conf, default=str)}" for r in session.query(DagRun).filter(DagRun.dag_id.in_(dag_ids))],
        }


def mlflow_text(tracking_uri: str) -> list[str]:
    """Every tag and param of every run, model version and registered model."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, tracking_uri)
    found = []
    for experiment in client.search_experiments():
        for mlflow_run in client.search_runs([experiment.experiment_id]):
            found.append(f"run {mlflow_run.info.run_id} params={mlflow_run.data.params} tags={mlflow_run.data.tags}")
    for model in client.search_registered_models():
        found.append(f"model {model.name} tags={model.tags}")
        for version in client.search_model_versions(f"name = '{model.name}'"):
            found.append(f"version {model.name}/{version.version} tags={version.tags}")
    return found


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


def test_the_canary_secrets_leak_nowhere(airflow_db, dagbag, churn_data, canary_connections, mlflow_store, tmp_path, capfd, caplog, monkeypatch):
    # retrain: every step of a release, and the backfill of a drift-started run (fake API).
    from mlops_airflow.core.payloads import DriftSummary
    from mlops_airflow.serving.local import default_state_dir

    drift = DriftSummary(
        model="churn",
        champion_version="1",
        window_start=DATA_END - dt.timedelta(days=2),
        window_end=DATA_END,
        onset=DATA_END - dt.timedelta(days=3),
        rows=1000,
        drifted_features=("monthly_charges",),
        retrain_run_id="drift__canary",
    ).to_xcom()
    # The drift monitor run that recorded these days, as the backfill reads it back through the (fake) API.
    canary_connections.api.xcoms[("drift_monitor_churn", "scheduled__canary", "detect_drift")] = dict(drift)
    drift["monitor_run_id"] = "scheduled__canary"
    conf = {"window_end": str(DATA_END), "window_days": DATA_DAYS, "reason": "canary", "drift": drift}
    state, tasks, _ = run(dagbag, "retrain_churn", conf)
    assert state == "success", tasks
    assert tasks["backfill_scores"] == "success"
    # batch scoring with the new champion, then a rollback that fails (no previous champion): the alert goes out.
    assert run(dagbag, "batch_score_churn", {"partition_date": str(DATA_END - dt.timedelta(days=2))})[0] == "success"
    assert run(dagbag, "rollback_churn", {"reason": "canary"})[0] == "failed"

    # Positive controls: each canary reached the service it is for.
    api, webhook = canary_connections.api, canary_connections.webhook
    token = next(r for r in api.requests if r["path"] == "/auth/token")
    assert token["body"]["password"] == SECRETS["airflow_api"]
    assert len(api.backfills) == 1  # the API took the canary password: the backfill was created
    alert = next(r for r in webhook.requests if r["path"] == "/hooks/alerts")
    assert alert["headers"]["Authorization"] == f"Bearer {SECRETS['mlops_alerts']}"
    assert "rollback_churn.restore_previous_champion failed" in alert["body"]["text"]

    # The pod a Kubernetes training run would start, built with the same connections.
    import yaml

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "mlops"}}],
                "current-context": "fake",
            }
        )
    )
    monkeypatch.setenv("MLOPS_TRAINING_BACKEND", "kubernetes")
    from kubernetes.client import ApiClient

    from mlops_airflow.operators.training_pod import ModelTrainingPodOperator, training_pod_kwargs
    from mlops_airflow.specs import load_spec

    spec = load_spec(CHURN_SPEC)
    pod_operator = ModelTrainingPodOperator(
        **training_pod_kwargs(spec),
        task_id="train_model",
        spec_path=spec.source,
        window_start="2026-01-01",
        window_end="2026-01-29",
        config_file=str(kubeconfig),  # KUBECONFIG is read once, when kubernetes is first imported
    )
    pod = json.dumps(ApiClient().sanitize_for_serialization(pod_operator.build_pod_request_obj()))
    from mlops_airflow.hooks.mlflow import MlflowHook

    places = {
        "pod spec": pod,
        "tracking URI given to pods": MlflowHook().get_tracking_uri(),
    }
    assert_no_canary(places, {"retrain_churn", "batch_score_churn", "rollback_churn"}, [tmp_path, default_state_dir()], mlflow_store, capfd, caplog)


DRIFT_RETRAIN_RUN_ID = f"drift__{DRIFT_START}__{DATA_END}"  # the retrain the monitor starts for the drift fixtures' data


def test_the_canary_secrets_leak_nowhere_in_the_drift_monitor(airflow_db, canary_connections, mlflow_store, tmp_path, capfd, caplog, monkeypatch):
    """drift_monitor: the wait, the data check, the KS sensor, the gate, the trigger and the Evidently report.

    Its own data, MLflow store (so no cooldown record) and no earlier retrain run for the window:
    every task succeeds, the trigger included, whichever tests ran before.
    """
    from airflow.dag_processing.dagbag import DagBag

    specs = tmp_path / "models"
    specs.mkdir()
    write_drift_spec(specs, tmp_path / "data", window_days=2)
    write_drift_data(tmp_path / "data")
    register_champion_with_reference(mlflow_store)
    delete_dag_runs("retrain_churn", DRIFT_RETRAIN_RUN_ID)  # an earlier test may have made it; the trigger would skip
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(specs))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    state, tasks, _ = run(bag, "drift_monitor_churn", {"window_end": str(DATA_END)})
    assert (state, tasks) == ("success", dict.fromkeys(MONITOR_TASKS, "success"))
    # The retrain it started carries the drift summary in its conf: searched too.
    assert_no_canary({}, {"drift_monitor_churn", "retrain_churn"}, [tmp_path], mlflow_store, capfd, caplog)


def assert_no_canary(places: dict[str, str], dag_ids: set[str], roots: list[Path], tracking_uri: str, capfd, caplog) -> None:
    """Search the task logs, the metadata of ``dag_ids``, MLflow, the files under ``roots`` and ``places``."""
    captured = capfd.readouterr()
    places = {
        "task logs": captured.out + captured.err + caplog.text,
        "MLflow tags and params": "\n".join(mlflow_text(tracking_uri)),
        **{name: "\n".join(rows) for name, rows in metadata_rows(dag_ids).items()},
        **places,
    }
    assert places["task logs"], "the task logs were not captured"
    assert places["xcom"], "no XCom was found to search"
    leaks = {place: text.count(CANARY) for place, text in places.items() if CANARY in text}
    # Files: MLflow artifacts (models, reports, decision records), serving state, predictions, data reports.
    files = [hit for root in roots for hit in files_containing(Path(root), CANARY.encode())]
    print(f"\ncanary hits: {sum(leaks.values())} in {sorted(leaks) or 'no place'}; files: {len(files)}; places searched: {sorted(places)}")
    assert leaks == {}
    assert files == []
