"""The serving manifests' wiring (what selects what, who may switch what) and the command line that prints them.

tests/unit/serving/test_kubernetes.py validates the default manifests against Kubernetes' schema and checks
their security settings; here: that the objects fit together, and the other options.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from mlops_airflow.serving.kubernetes import deployment_name, preview_service_name
from mlops_airflow.serving.kubernetes_manifests import main, serving_manifests

K8S_VERSION = "1.33"
ARGS = {"image": "ghcr.io/mlops-airflow/model-server:0.1.0", "tracking_uri": "http://mlflow.mlops.svc:5000"}


def manifests(model: str = "fraud", namespace: str = "scoring", **options):
    return serving_manifests(model=model, namespace=namespace, switcher_service_account="worker", switcher_namespace="airflow", **{**ARGS, **options})


def by_kind(documents, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def container_env(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


class TestServingManifests:
    def test_every_object_is_in_the_namespace_and_named_for_the_model(self):
        documents = manifests()
        assert {d["metadata"]["namespace"] for d in documents} == {"scoring"}
        assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
            ("ServiceAccount", "fraud-model-server"),
            ("Deployment", "fraud-blue"),
            ("Deployment", "fraud-green"),
            ("Service", "fraud"),
            ("Service", "fraud-preview"),
            ("NetworkPolicy", "fraud-model-server"),
            ("Role", "fraud-serving-switch"),
            ("RoleBinding", "fraud-serving-switch"),
        ]

    def test_live_selects_blue_and_preview_green_each_exactly_one_deployment(self):
        documents = manifests()
        deployments = by_kind(documents, "Deployment")
        selected = {}
        for name, service in by_kind(documents, "Service").items():
            selector = service["spec"]["selector"].items()
            selected[name] = [d for d, dep in deployments.items() if selector <= dep["spec"]["template"]["metadata"]["labels"].items()]
        assert selected == {"fraud": ["fraud-blue"], "fraud-preview": ["fraud-green"]}

    def test_deployments_select_their_own_pods_and_start_scaled_to_zero(self):
        for deployment in by_kind(manifests(), "Deployment").values():
            template = deployment["spec"]["template"]
            assert deployment["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"]
            assert deployment["spec"]["replicas"] == 0
            assert template["spec"]["serviceAccountName"] == "fraud-model-server"
            (container,) = template["spec"]["containers"]
            assert container["image"] == ARGS["image"]
            assert "http" in {port["name"] for port in container["ports"]}  # the Services' targetPort and the probes' port

    def test_the_role_names_exactly_the_objects_the_switch_touches(self):
        documents = manifests()
        (role,) = by_kind(documents, "Role").values()
        named = {(rule["resources"][0], name) for rule in role["rules"] for name in rule["resourceNames"]}
        created = {("services", n) for n in by_kind(documents, "Service")} | {("deployments", n) for n in by_kind(documents, "Deployment")}
        assert named == created
        assert created == {
            ("services", "fraud"),
            ("services", preview_service_name("fraud")),
            ("deployments", deployment_name("fraud", "blue")),
            ("deployments", deployment_name("fraud", "green")),
        }

    def test_the_binding_gives_the_role_to_the_workers_account_in_its_own_namespace(self):
        (binding,) = by_kind(manifests(), "RoleBinding").values()
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fraud-serving-switch"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "worker", "namespace": "airflow"}]

    @pytest.mark.parametrize(
        ("secret", "credentials"),
        [
            pytest.param(
                "mlflow-serving-credentials",
                {
                    "MLFLOW_TRACKING_USERNAME": {"secretKeyRef": {"name": "mlflow-serving-credentials", "key": "username"}},
                    "MLFLOW_TRACKING_PASSWORD": {"secretKeyRef": {"name": "mlflow-serving-credentials", "key": "password"}},
                },
                id="default-secret",
            ),
            pytest.param(
                "fraud-mlflow",
                {
                    "MLFLOW_TRACKING_USERNAME": {"secretKeyRef": {"name": "fraud-mlflow", "key": "username"}},
                    "MLFLOW_TRACKING_PASSWORD": {"secretKeyRef": {"name": "fraud-mlflow", "key": "password"}},
                },
                id="own-secret",
            ),
            pytest.param(None, {}, id="no-secret"),
        ],
    )
    def test_mlflow_credentials_come_from_the_secret_only(self, secret, credentials):
        documents = manifests(credentials_secret=secret)
        for deployment in by_kind(documents, "Deployment").values():
            env = container_env(deployment)
            assert {k: v for k, v in env.items() if k.startswith("MLFLOW_TRACKING_") and k != "MLFLOW_TRACKING_URI"} == credentials
            assert env["MLFLOW_TRACKING_URI"] == ARGS["tracking_uri"]

    def test_without_a_secret_the_manifests_still_validate(self):
        for doc in manifests(credentials_secret=None):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


class TestMain:
    def test_prints_the_manifests_as_one_yaml_stream(self, capsys):
        assert main(["--model", "fraud", "--image", ARGS["image"], "--tracking-uri", ARGS["tracking_uri"]]) == 0
        printed = list(yaml.safe_load_all(capsys.readouterr().out))
        defaults = serving_manifests(model="fraud", namespace="mlops", switcher_service_account="airflow-worker", switcher_namespace="airflow", **ARGS)
        assert printed == defaults

    def test_every_option(self, capsys):
        argv = ["--model", "fraud", "--namespace", "scoring", "--switcher-service-account", "worker", "--switcher-namespace", "airflow"]
        main([*argv, "--image", ARGS["image"], "--tracking-uri", ARGS["tracking_uri"]])
        assert list(yaml.safe_load_all(capsys.readouterr().out)) == manifests()

    def test_a_gateway_adds_the_live_route(self, capsys):
        from mlops_airflow.specs import GatewayRef

        argv = ["--model", "fraud", "--namespace", "scoring", "--switcher-service-account", "worker", "--switcher-namespace", "airflow"]
        main([*argv, "--image", ARGS["image"], "--tracking-uri", ARGS["tracking_uri"], "--gateway", "public", "--gateway-namespace", "edge"])
        printed = list(yaml.safe_load_all(capsys.readouterr().out))
        assert printed == manifests(gateway=GatewayRef("public", "edge"))
        assert [d["metadata"]["name"] for d in printed if d["kind"] == "HTTPRoute"] == ["fraud"]
        with pytest.raises(SystemExit):
            main([*argv, "--image", "x", "--tracking-uri", "http://mlflow", "--gateway-namespace", "edge"])
        assert "--gateway-namespace and --gateway-section need --gateway" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("argv", "missing"),
        [
            pytest.param([], "--model, --image, --tracking-uri", id="nothing"),
            pytest.param(["--model", "fraud", "--image", "x"], "--tracking-uri", id="no-tracking-uri"),
            pytest.param(["--model", "fraud", "--tracking-uri", "http://mlflow"], "--image", id="no-image"),
        ],
    )
    def test_required_arguments(self, capsys, argv, missing):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert f"the following arguments are required: {missing}" in capsys.readouterr().err
