"""The Kubernetes objects blue-green serving needs (with a Gateway, the live HTTPRoute too), and the least-privilege Role that switches them.

``python -m mlops_airflow.serving.kubernetes_manifests --model churn --namespace mlops ...``
prints them as one YAML stream for ``kubectl apply -f -`` (or a chart's templates).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlops_airflow.core.model_loading import SAFE_MODEL_ENV
from mlops_airflow.serving.base import Color
from mlops_airflow.serving.kubernetes import (
    CONTAINER,
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    MANAGED_BY,
    VERSION_ANNOTATION,
    deployment_name,
    preview_service_name,
    route_rule,
)
from mlops_airflow.serving.model_server import (
    CONTAINER_WORKERS,
    ESTIMATOR_KIND_ENV,
    MODEL_URI_ENV,
    Capacity,
    server_command,
)
from mlops_airflow.specs.model import GatewayRef

SERVER_PORT = 8080


def switch_role_rules(model: str, *, gateway: bool = False) -> list[dict[str, Any]]:
    """Exactly the API calls :class:`KubernetesServingBackend` makes: get and patch, on four named objects (five with the HTTPRoute)."""
    rules = [
        {"apiGroups": [""], "resources": ["services"], "resourceNames": [model, preview_service_name(model)], "verbs": ["get", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [deployment_name(model, c) for c in Color], "verbs": ["get", "patch"]},
    ]
    if gateway:
        rules.append({"apiGroups": [GATEWAY_GROUP], "resources": ["httproutes"], "resourceNames": [model], "verbs": ["get", "patch"]})
    return rules


def live_route(model: str, namespace: str, gateway: GatewayRef, port: int = 80) -> dict[str, Any]:
    """The HTTPRoute that brings the Gateway's traffic to the model: all of it to the live Service until a canary step weights the preview one."""
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace  # the Gateway's listener must allow routes from this namespace
    if gateway.section_name:
        parent["sectionName"] = gateway.section_name
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": model, "namespace": namespace, "labels": {"app": model, **MANAGED_BY}},
        "spec": {"parentRefs": [parent], "rules": [route_rule(model, port)]},
    }


def capacity_env(capacity: Capacity) -> list[dict[str, str]]:
    """The server's capacity as environment variables. A pod sees its node's CPUs, not its own share: workers are set, never counted."""
    return [{"name": name, "value": value} for name, value in capacity.for_container().environment().items()]


def _deployment(model: str, namespace: str, color: Color, image: str, tracking_uri: str, credentials_secret: str | None, capacity: Capacity) -> dict[str, Any]:
    labels = {"app": model, "color": str(color)}
    workers = capacity.for_container().workers
    # What the server needs and nothing else; a deploy sets the model URI and estimator kind.
    env = [
        {"name": MODEL_URI_ENV, "value": ""},
        {"name": ESTIMATOR_KIND_ENV, "value": ""},
        {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
        *({"name": name, "value": value} for name, value in SAFE_MODEL_ENV.items()),
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - an emptyDir
        *capacity_env(capacity),
    ]
    if credentials_secret:
        env += [
            {"name": f"MLFLOW_TRACKING_{key}", "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": key.lower()}}}
            for key in ("USERNAME", "PASSWORD")
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(model, color), "namespace": namespace, "labels": {**labels, **MANAGED_BY}},
        # A colour starts at zero replicas; deploying a version scales it up.
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {VERSION_ANNOTATION: ""}},
                "spec": {
                    "serviceAccountName": f"{model}-model-server",
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": image,
                            # The model URI and kind come from the environment: no $(VAR) expansion in args.
                            "command": server_command("python", model_uri=None, estimator_kind=None, host="0.0.0.0", port=SERVER_PORT),  # noqa: S104 - inside its pod
                            "env": env,
                            "ports": [{"name": "http", "containerPort": SERVER_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 5},
                            "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "initialDelaySeconds": 30, "periodSeconds": 10},
                            # A CPU per worker process; memory: the model once, shared by the forked workers, plus their own.
                            "resources": {"requests": {"cpu": str(workers), "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _network_policy(model: str, namespace: str) -> dict[str, Any]:
    """The model servers accept connections on the serving port only."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{model}-model-server", "namespace": namespace, "labels": {"app": model, **MANAGED_BY}},
        "spec": {
            "podSelector": {"matchLabels": {"app": model}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": SERVER_PORT}]}],
        },
    }


def _service(name: str, model: str, namespace: str, color: Color) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": model, **MANAGED_BY}},
        "spec": {"selector": {"app": model, "color": str(color)}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def serving_manifests(
    *,
    model: str,
    namespace: str,
    image: str,
    tracking_uri: str,
    switcher_service_account: str,
    switcher_namespace: str,
    credentials_secret: str | None = "mlflow-serving-credentials",  # noqa: S107 - the name of a Kubernetes Secret
    capacity: Capacity | None = None,
    gateway: GatewayRef | None = None,
) -> list[dict[str, Any]]:
    """Deployments per colour, the live and preview Services, the servers' NetworkPolicy, and the Role + RoleBinding for the switch.

    :param switcher_service_account: the service account that runs the serving tasks (Airflow's workers).
    :param gateway: the Gateway whose HTTPRoute ``<model>`` carries the live traffic (canary releases); ``None``: no route.
    """
    role = f"{model}-serving-switch"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": f"{model}-model-server", "namespace": namespace, "labels": MANAGED_BY},
            "automountServiceAccountToken": False,
        },
        *(_deployment(model, namespace, color, image, tracking_uri, credentials_secret, capacity or Capacity(workers=None)) for color in Color),
        _service(model, model, namespace, Color.BLUE),
        _service(preview_service_name(model), model, namespace, Color.GREEN),
        _network_policy(model, namespace),
        *([live_route(model, namespace, gateway)] if gateway is not None else []),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role, "namespace": namespace, "labels": MANAGED_BY},
            "rules": switch_role_rules(model, gateway=gateway is not None),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": namespace, "labels": MANAGED_BY},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": switcher_service_account, "namespace": switcher_namespace}],
        },
    ]


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--namespace", default="mlops")
    parser.add_argument("--image", required=True, help="an image with MLflow and the model's dependencies")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--switcher-service-account", default="airflow-worker")
    parser.add_argument("--switcher-namespace", default="airflow")
    parser.add_argument("--workers", type=int, default=CONTAINER_WORKERS, help="model-server processes per pod (and CPUs requested)")
    parser.add_argument("--gateway", help="the Gateway (serving.kubernetes.gateway.name) whose HTTPRoute carries the live traffic")
    parser.add_argument("--gateway-namespace", help="its namespace (default: the model's)")
    parser.add_argument("--gateway-section", help="one of its listeners (sectionName)")
    args = parser.parse_args(argv)
    if (args.gateway_namespace or args.gateway_section) and not args.gateway:
        parser.error("--gateway-namespace and --gateway-section need --gateway")
    gateway = GatewayRef(args.gateway, args.gateway_namespace, args.gateway_section) if args.gateway else None
    documents = serving_manifests(
        model=args.model,
        namespace=args.namespace,
        image=args.image,
        tracking_uri=args.tracking_uri,
        switcher_service_account=args.switcher_service_account,
        switcher_namespace=args.switcher_namespace,
        capacity=Capacity(workers=args.workers),
        gateway=gateway,
    )
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
