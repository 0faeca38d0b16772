"""helm/model-serving: lint, render with a real helm, validate, restricted pods, and the backend drives what it renders."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
import yaml
from fake_kubernetes import FakeCluster, FakeKubernetesServer
from helm_binary import helm_binary
from helpers import REPO_ROOT

from mlops_airflow.serving.base import Color, SwitchOutcome
from mlops_airflow.serving.kubernetes import CONTAINER, VERSION_ANNOTATION, KubernetesServingBackend
from mlops_airflow.serving.kubernetes_manifests import serving_manifests, switch_role_rules
from mlops_airflow.utils.pod_security import restricted_violations

CHART = REPO_ROOT / "helm" / "model-serving"
K8S_VERSION = "1.33"
NAMESPACE = "mlops"


@pytest.fixture(scope="module")
def helm():
    return str(helm_binary())


def render(helm: str, *values: str, model: str = "churn") -> list[dict]:
    command = [helm, "template", f"{model}-serving", str(CHART), "--namespace", NAMESPACE, "--set", f"model={model}"]
    for value in values:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_helm_lint_passes(helm):
    result = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rendered_manifest_validates(helm):
    docs = render(helm)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "Deployment",
            "Deployment",
            "Service",
            "Service",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
        ]
    )
    assert {doc["metadata"]["namespace"] for doc in docs} == {NAMESPACE}


def test_an_optional_autoscaler_per_colour_targets_its_deployment(helm):
    assert by_kind(render(helm), "HorizontalPodAutoscaler") == {}
    docs = render(helm, "autoscaling.enabled=true", "autoscaling.maxReplicas=6")
    autoscalers = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"churn-blue", "churn-green"}
    deployments = by_kind(docs, "Deployment")
    for name, autoscaler in autoscalers.items():
        kubernetes_validate.validate(autoscaler, K8S_VERSION, strict=True)
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert name in deployments
        assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (2, 6)


def test_each_pod_runs_as_many_workers_as_the_cpus_it_requests(helm):
    for values, workers in (((), "2"), (("capacity.workers=4", "resources.requests.cpu=4"), "4")):
        for deployment in by_kind(render(helm, *values), "Deployment").values():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["MLOPS_SERVING_WORKERS"] == str(container["resources"]["requests"]["cpu"]) == workers
            assert (env["MLOPS_SERVING_MAX_PENDING"], env["MLOPS_SERVING_MAX_WAIT_SECONDS"]) == ("64", "1")


def test_pods_pass_the_restricted_pod_security_standard(helm):
    deployments = by_kind(render(helm), "Deployment")
    assert set(deployments) == {"churn-blue", "churn-green"}
    for deployment in deployments.values():
        pod = {"spec": deployment["spec"]["template"]["spec"]}
        assert restricted_violations(pod) == []
        assert pod["spec"]["automountServiceAccountToken"] is False
        (container,) = pod["spec"]["containers"]
        assert {"readinessProbe", "livenessProbe", "startupProbe", "resources"} <= set(container)


def test_a_weakened_pod_is_caught(helm):
    """The restricted check above can fail: a chart value that breaks it is reported."""
    deployment = by_kind(render(helm), "Deployment")["churn-blue"]
    pod = {"spec": deployment["spec"]["template"]["spec"]}
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    assert restricted_violations(pod)


def test_model_servers_are_reachable_on_the_serving_port_only(helm):
    docs = render(helm, "containerPort=9000")
    (policy,) = by_kind(docs, "NetworkPolicy").values()
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for deployment in by_kind(docs, "Deployment").values():
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9000}]}]  # from anywhere, to that port only


def test_network_policy_sources_are_configurable(helm):
    docs = render(helm, "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.team=web")
    (policy,) = by_kind(docs, "NetworkPolicy").values()
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    assert policy["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]
    assert by_kind(render(helm, "networkPolicy.enabled=false"), "NetworkPolicy") == {}


def test_role_is_exactly_what_the_switch_needs(helm):
    docs = render(helm, "switcher.serviceAccount=airflow-worker", "switcher.namespace=airflow")
    (role,) = by_kind(docs, "Role").values()
    assert role["rules"] == switch_role_rules("churn")
    (binding,) = by_kind(docs, "RoleBinding").values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "airflow-worker", "namespace": "airflow"}]


def test_the_chart_and_the_python_manifests_agree(helm):
    """Two ways to create the objects (the chart, `python -m mlops_airflow.serving.kubernetes_manifests`): same names, selectors, container."""
    chart = render(helm, "model=fraud", model="fraud")
    python = serving_manifests(
        model="fraud", namespace=NAMESPACE, image="x", tracking_uri="http://mlflow", switcher_service_account="airflow-worker", switcher_namespace="airflow"
    )
    for kind in ("Deployment", "Service", "ServiceAccount", "Role", "NetworkPolicy"):
        assert set(by_kind(chart, kind)) == set(by_kind(python, kind)), kind
    for name, policy in by_kind(python, "NetworkPolicy").items():
        assert by_kind(chart, "NetworkPolicy")[name]["spec"] == policy["spec"]
    for name, service in by_kind(python, "Service").items():
        assert by_kind(chart, "Service")[name]["spec"]["selector"] == service["spec"]["selector"]
    for name, deployment in by_kind(chart, "Deployment").items():
        assert deployment["spec"]["selector"] == by_kind(python, "Deployment")[name]["spec"]["selector"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["name"] == CONTAINER
        assert VERSION_ANNOTATION in deployment["spec"]["template"]["metadata"]["annotations"]
        # The same safe model server with the same environment (pickle off, nothing else of the worker's).
        (python_container,) = by_kind(python, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
        assert (container["command"], container.get("args")) == (python_container["command"], python_container.get("args"))
        assert {e["name"] for e in container["env"]} == {e["name"] for e in python_container["env"]}
        assert {"name": "MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "value": "false"} in container["env"]


def test_the_serving_backend_releases_onto_what_the_chart_renders(helm):
    """Seed a fake API server with the rendered objects: deploy, wait, switch and scale down all work on them."""
    from kubernetes import client

    cluster = FakeCluster(NAMESPACE, rollout_reads=1)
    for doc in render(helm):
        if doc["kind"] in ("Deployment", "Service"):
            cluster.add(doc)
    with FakeKubernetesServer(cluster) as server:
        configuration = client.Configuration()
        configuration.host = server.url
        backend = KubernetesServingBackend(model="churn", namespace=NAMESPACE, api_client=client.ApiClient(configuration), replicas=2)
        assert backend.status().live is Color.BLUE  # the chart's default live colour, not yet ready
        assert backend.deploy(Color.GREEN, "1", "models:/churn/1", estimator_kind="hist_gradient_boosting") is True
        assert backend.wait_ready(Color.GREEN, timeout=10, poll=0.01).ready
        assert backend.switch(Color.GREEN) is SwitchOutcome.SWITCHED
        assert (backend.status().live, backend.status().live_version) == (Color.GREEN, "1")
        deployment = cluster.get("Deployment", "churn-green")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {"name": "MODEL_URI", "value": "models:/churn/1"} in container["env"]
    assert cluster.unready_switches == []


def test_with_a_gateway_the_chart_renders_the_live_route_and_may_patch_it(helm):
    from gateway_api import validate_httproute

    from mlops_airflow.specs import GatewayRef

    assert by_kind(render(helm), "HTTPRoute") == {}
    docs = render(helm, "gateway.name=public", "gateway.namespace=gateways", "gateway.sectionName=https")
    (route,) = by_kind(docs, "HTTPRoute").values()
    validate_httproute(route)
    (role,) = by_kind(docs, "Role").values()
    assert role["rules"] == switch_role_rules("churn", gateway=True)
    python = serving_manifests(
        model="churn",
        namespace=NAMESPACE,
        image="x",
        tracking_uri="http://mlflow",
        switcher_service_account="airflow-worker",
        switcher_namespace="airflow",
        gateway=GatewayRef("public", "gateways", "https"),
    )
    (python_route,) = by_kind(python, "HTTPRoute").values()
    assert route["spec"] == python_route["spec"]
