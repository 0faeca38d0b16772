"""serving_backend: the backend a spec's ``serving.backend`` names, built from the spec's own settings."""

from __future__ import annotations

import json
import uuid

import pytest
from fake_docker import FakeDockerServer, FakeEngine
from fake_kubernetes import FakeCluster, FakeKubernetesServer
from helpers import churn_spec_raw, write_spec

from mlops_airflow.serving.base import Color
from mlops_airflow.serving.factory import serving_backend
from mlops_airflow.specs import load_spec

MLFLOW_ENV = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_TRACKING_USERNAME": "mlops-pipeline"}


def spec_with(tmp_path, backend: str, **section):
    raw = churn_spec_raw()
    raw["serving"]["backend"] = backend
    if section:
        raw["serving"].setdefault(backend, {}).update(section)
    return load_spec(write_spec(raw, tmp_path))


def kubeconfig(server_url: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
        "users": [{"name": "worker", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "worker"}}],
        "current-context": "fake",
    }


@pytest.fixture
def cluster():
    """The churn serving objects in namespace ``serving``, blue live with v4; served on loopback."""
    from mlops_airflow.serving.kubernetes_manifests import serving_manifests

    cluster = FakeCluster("serving", rollout_reads=1)
    documents = serving_manifests(
        model="churn", namespace="serving", image="model-server:1", tracking_uri="http://mlflow:5000", switcher_service_account="w", switcher_namespace="a"
    )
    for doc in documents:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "churn-blue":
            doc["spec"]["replicas"] = 1
            doc["spec"]["template"]["metadata"]["annotations"]["mlops-airflow/model-version"] = "4"
        if doc["kind"] in ("Deployment", "Service"):
            cluster.add(doc)
    with FakeKubernetesServer(cluster) as server:
        yield cluster, server


class TestServingBackend:
    def test_local(self, tmp_path, monkeypatch):
        from mlops_airflow.serving.local import LocalServingBackend

        monkeypatch.setenv("MLOPS_SERVING_STATE_DIR", str(tmp_path / "state"))
        backend = serving_backend(spec_with(tmp_path, "local", live_port=9600), mlflow_env=MLFLOW_ENV)
        assert isinstance(backend, LocalServingBackend)
        assert backend.live_url() == "http://127.0.0.1:9600"
        assert backend.state_file == tmp_path / "state" / "churn.json"
        assert backend.env == MLFLOW_ENV

    def test_kubernetes_uses_the_specs_connection_namespace_replicas_and_port(self, tmp_path, monkeypatch, cluster):
        fake, server = cluster
        connection = {"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig(server.url)}}
        monkeypatch.setenv("AIRFLOW_CONN_SERVING_CLUSTER", json.dumps(connection))
        spec = spec_with(tmp_path, "kubernetes", conn_id="serving_cluster", namespace="serving", replicas=3, port=8081)

        backend = serving_backend(spec, mlflow_env=MLFLOW_ENV)
        status = backend.status()  # through the connection's kubeconfig, in the spec's namespace
        assert (status.live, status.live_version) == (Color.BLUE, "4")
        backend.deploy(Color.GREEN, "5", "models:/churn/5", estimator_kind="hist_gradient_boosting")
        assert fake.get("Deployment", "churn-green")["spec"]["replicas"] == 3
        assert backend.live_url() == "http://churn.serving.svc:8081"

    def test_docker_uses_the_specs_engine_and_router_and_passes_the_mlflow_env(self, tmp_path):
        from mlops_airflow.serving.docker import LABEL_VERSION

        engine = FakeEngine(healthy_after=0)
        engine.containers["churn-blue"] = {
            "Id": uuid.uuid4().hex,
            "Name": "/churn-blue",
            "Config": {"Labels": {LABEL_VERSION: "4"}},
            "State": {"Status": "running", "Running": True, "ExitCode": 0},
            "inspects": 0,
        }
        with FakeDockerServer(engine) as server:
            spec = spec_with(tmp_path, "docker", base_url=server.url, router_host="router", live_port=8123)
            backend = serving_backend(spec, mlflow_env=MLFLOW_ENV)
            blue = backend.is_ready(Color.BLUE)
        assert (blue.version, blue.ready) == ("4", True)
        assert backend.live_url() == "http://router:8123"
        assert MLFLOW_ENV.items() <= backend.container_env().items()
