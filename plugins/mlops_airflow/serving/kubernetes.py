"""The Kubernetes serving backend: two Deployments, a live Service and a preview Service.

Deployments ``<model>-blue`` and ``<model>-green`` (labels ``app``, ``color``) run the
model server (:mod:`mlops_airflow.serving.model_server`; a deploy sets its ``MODEL_URI`` and
``MODEL_ESTIMATOR_KIND``); Service ``<model>`` selects the live colour and
``<model>-preview`` the colour being tested. A switch is one patch of the live
Service's selector, guarded by the Service's ``resourceVersion`` so that a concurrent
change is a 409 we re-read and re-decide on, never a lost update. The only API calls are
get and patch on those four named objects: exactly what :func:`serving_manifests`'s
Role grants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.serving.base import BlueGreenBackend, Color, ColorNotReadyError, ColorState, ServingStatus, SwitchConflictError, SwitchOutcome

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from mlops_airflow.serving.inference_log import InferenceLogSettings
    from mlops_airflow.serving.model_server import Capacity

VERSION_ANNOTATION = "mlops-airflow/model-version"
CONTAINER = "model-server"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlops-airflow"}
_SWITCH_ATTEMPTS = 5


class KubernetesApiError(MlopsError):
    """The Kubernetes API failed (5xx, timeout, connection); retryable."""


def deployment_name(model: str, color: Color) -> str:
    return f"{model}-{color}"


def preview_service_name(model: str) -> str:
    return f"{model}-preview"


def rollout_ready(deployment: dict[str, Any]) -> tuple[bool, str]:
    """``kubectl rollout status``'s rules, on a Deployment as a dict: ready, and why not."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    if not wanted:
        return False, "scaled to zero"
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    observed = status.get("observedGeneration")
    if observed is None or observed < generation:
        return False, f"rollout not observed yet (generation {generation}, observed {observed})"
    updated = status.get("updatedReplicas") or 0
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated"
    total = status.get("replicas") or 0
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    available = status.get("availableReplicas") or 0
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {wanted} replicas available"


class KubernetesServingBackend(BlueGreenBackend):
    """
    Blue-green serving of one model in one namespace.

    :param model: the model name (Deployments ``<model>-blue|green``, Services ``<model>``, ``<model>-preview``).
    :param namespace: where they live.
    :param api_client: a configured ``kubernetes.client.ApiClient`` (see :meth:`from_hook`).
    :param replicas: replicas of a colour that serves.
    :param port: the Services' port, for the URLs.
    :param request_timeout: seconds per API request.
    """

    def __init__(
        self,
        *,
        model: str,
        namespace: str,
        api_client: ApiClient,
        replicas: int = 2,
        port: int = 80,
        request_timeout: float = 10.0,
        capacity: Capacity | None = None,
        inference_log: InferenceLogSettings | None = None,
    ) -> None:
        from kubernetes import client

        self.capacity = capacity
        self.inference_log = inference_log
        self.model = model
        self.namespace = namespace
        self.replicas = replicas
        self.port = port
        self.request_timeout = request_timeout
        self._api_client = api_client
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)

    @classmethod
    def from_hook(cls, *, kubernetes_conn_id: str = "kubernetes_default", **kwargs: Any) -> KubernetesServingBackend:
        """Configuration and credentials from the cncf-kubernetes provider's hook (in-cluster, kubeconfig, or connection)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return cls(api_client=KubernetesHook(conn_id=kubernetes_conn_id).api_client, **kwargs)

    # -- API calls: get and patch on four named objects, nothing else ---------------------

    def _call(self, what: str, method, *args, **kwargs) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            result = method(*args, namespace=self.namespace, _request_timeout=self.request_timeout, **kwargs)
        except ApiException as err:
            if err.status == 409:
                raise
            raise KubernetesApiError(f"{what} in namespace {self.namespace}: HTTP {err.status} {err.reason}") from err
        except (HTTPError, OSError) as err:
            raise KubernetesApiError(f"{what} in namespace {self.namespace}: {err}") from err
        return self._api_client.sanitize_for_serialization(result)

    def _deployment(self, color: Color) -> dict[str, Any]:
        name = deployment_name(self.model, color)
        return self._call(f"reading Deployment {name}", self._apps.read_namespaced_deployment, name)

    def _patch_deployment(self, color: Color, body: dict) -> dict[str, Any]:
        name = deployment_name(self.model, color)
        return self._call(f"patching Deployment {name}", self._apps.patch_namespaced_deployment, name, body=body)

    def _service(self, name: str) -> dict[str, Any]:
        return self._call(f"reading Service {name}", self._core.read_namespaced_service, name)

    def _patch_service(self, name: str, body: dict) -> dict[str, Any]:
        return self._call(f"patching Service {name}", self._core.patch_namespaced_service, name, body=body)

    # -- the protocol ----------------------------------------------------------------------

    @staticmethod
    def _selected_color(service: dict[str, Any]) -> Color | None:
        value = ((service.get("spec") or {}).get("selector") or {}).get("color")
        return Color(value) if value in (Color.BLUE, Color.GREEN) else None

    def _state(self, color: Color, deployment: dict[str, Any]) -> ColorState:
        ready, detail = rollout_ready(deployment)
        annotations = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
        return ColorState(
            color=color,
            version=annotations.get(VERSION_ANNOTATION) or None,
            ready=ready,
            replicas=(deployment.get("spec") or {}).get("replicas", 0),
            detail=detail,
        )

    def live_color(self) -> Color | None:
        return self._selected_color(self._service(self.model))

    def status(self) -> ServingStatus:
        return ServingStatus(live=self.live_color(), colors={c: self._state(c, self._deployment(c)) for c in Color})

    def is_ready(self, color: Color) -> ColorState:
        return self._state(color, self._deployment(color))

    def deploy(self, color: Color, version: str, model_uri: str, *, estimator_kind: str) -> bool:
        from mlops_airflow.serving.model_server import COLOR_ENV, ESTIMATOR_KIND_ENV, MODEL_URI_ENV

        self.refuse_live(color, f"deploy {self.model} v{version} onto {color}")
        current = self.is_ready(color)
        capacity_environment = self.capacity.for_container().environment() if self.capacity is not None else {}
        log_environment = self.inference_log.environment() if self.inference_log is not None else {}
        changed = False
        if current.version != str(version) or current.replicas != self.replicas:
            annotation = {VERSION_ANNOTATION: str(version)}
            self._patch_deployment(
                color,
                {
                    "metadata": {"annotations": annotation},
                    "spec": {
                        "replicas": self.replicas,
                        "template": {
                            "metadata": {"annotations": annotation},
                            "spec": {
                                "containers": [
                                    {
                                        "name": CONTAINER,
                                        "env": [
                                            {"name": MODEL_URI_ENV, "value": model_uri},
                                            {"name": ESTIMATOR_KIND_ENV, "value": estimator_kind},
                                            # The spec's serving.capacity, per pod (merged by name with the manifests' values).
                                            *({"name": k, "value": v} for k, v in capacity_environment.items()),
                                            # Where every answer is logged (object storage; the pods' credentials come from the manifests).
                                            {"name": COLOR_ENV, "value": str(color)},
                                            *({"name": k, "value": v} for k, v in log_environment.items()),
                                        ],
                                    }
                                ]
                            },
                        },
                    },
                },
            )
            changed = True
        preview = preview_service_name(self.model)
        if self._selected_color(self._service(preview)) is not color:
            self._patch_service(preview, {"spec": {"selector": {"app": self.model, "color": str(color)}}})
            changed = True
        return changed

    def color_name(self, color: Color) -> str:
        return deployment_name(self.model, color)

    def preview_url(self, color: Color) -> str:
        return f"http://{preview_service_name(self.model)}.{self.namespace}.svc:{self.port}"

    def live_url(self) -> str:
        return f"http://{self.model}.{self.namespace}.svc:{self.port}"

    def switch(self, color: Color) -> SwitchOutcome:
        from kubernetes.client.exceptions import ApiException

        for _ in range(_SWITCH_ATTEMPTS):
            service = self._service(self.model)
            if self._selected_color(service) is color:
                return SwitchOutcome.ALREADY_LIVE
            state = self.is_ready(color)
            if not state.ready:
                raise ColorNotReadyError(f"refusing to switch {self.model} to {color}: {state.detail}")
            version = service["metadata"]["resourceVersion"]
            body = {"metadata": {"resourceVersion": version}, "spec": {"selector": {"app": self.model, "color": str(color)}}}
            try:
                self._patch_service(self.model, body)
            except ApiException as err:  # 409: someone changed the Service since we read it; re-read, re-decide
                if err.status != 409:
                    raise
                continue
            return SwitchOutcome.SWITCHED
        raise SwitchConflictError(f"the Service {self.model} changed under us {_SWITCH_ATTEMPTS} times; retry")

    def scale_down(self, color: Color) -> bool:
        self.refuse_live(color, f"scale down {deployment_name(self.model, color)}")
        if self.is_ready(color).replicas == 0:
            return False
        self._patch_deployment(color, {"spec": {"replicas": 0}})
        return True
