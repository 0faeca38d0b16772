"""The Kubernetes serving backend: two Deployments, a live Service and a preview Service (and an HTTPRoute).

Deployments ``<model>-blue`` and ``<model>-green`` (labels ``app``, ``color``) run the
model server (:mod:`mlops_airflow.serving.model_server`; a deploy sets its ``MODEL_URI`` and
``MODEL_ESTIMATOR_KIND``); Service ``<model>`` selects the live colour and
``<model>-preview`` the colour being tested. A switch is one patch of the live
Service's selector, guarded by the Service's ``resourceVersion`` so that a concurrent
change is a 409 we re-read and re-decide on, never a lost update.

With a Gateway (``serving.kubernetes.gateway``), live traffic comes in through the Gateway API
``HTTPRoute`` ``<model>``: one rule whose two backends are the live and the preview Services,
weighted 100 and 0, and which marks every request live for the inference log. A canary step
sets the two weights (one patch of the route, guarded the same way); a switch moves the live
Service and then puts the weights back to 100 and 0. A split never changes which colour is
live: that is the live Service's. The only API calls are get and patch on those named
objects: exactly what :func:`serving_manifests`'s Role grants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.serving.base import (
    BlueGreenBackend,
    Color,
    ColorNotReadyError,
    ColorState,
    LiveColorError,
    ServingStatus,
    SplitUnsupportedError,
    SwitchConflictError,
    SwitchOutcome,
)
from mlops_airflow.serving.inference_log import ROUTE_HEADER, ROUTE_LIVE

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from mlops_airflow.serving.inference_log import InferenceLogSettings
    from mlops_airflow.serving.model_server import Capacity

VERSION_ANNOTATION = "mlops-airflow/model-version"
CONTAINER = "model-server"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlops-airflow"}
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
_SWITCH_ATTEMPTS = 5


def route_rule(model: str, port: int, *, live_weight: int = 100, preview_weight: int = 0) -> dict[str, Any]:
    """The live HTTPRoute's one rule: everything to the live Service and the preview Service by weight, marked live for the inference log."""
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": ROUTE_HEADER, "value": ROUTE_LIVE}]}}],
        "backendRefs": [
            {"name": model, "port": port, "weight": live_weight},
            {"name": preview_service_name(model), "port": port, "weight": preview_weight},
        ],
    }


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
    :param gateway: live traffic comes through the HTTPRoute ``<model>`` (canary weights); ``False``: the live Service only.
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
        gateway: bool = False,
    ) -> None:
        from kubernetes import client

        self.gateway = gateway
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
        self._custom = client.CustomObjectsApi(api_client)

    @classmethod
    def from_hook(cls, *, kubernetes_conn_id: str = "kubernetes_default", **kwargs: Any) -> KubernetesServingBackend:
        """Configuration and credentials from the cncf-kubernetes provider's hook (in-cluster, kubeconfig, or connection)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return cls(api_client=KubernetesHook(conn_id=kubernetes_conn_id).api_client, **kwargs)

    # -- API calls: get and patch on four (five) named objects, nothing else ---------------

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

    def _route(self) -> dict[str, Any]:
        return self._call(
            f"reading HTTPRoute {self.model}", self._custom.get_namespaced_custom_object, GATEWAY_GROUP, GATEWAY_VERSION, plural="httproutes", name=self.model
        )

    def _patch_route(self, body: dict) -> dict[str, Any]:
        # A JSON merge patch (custom objects have no strategic merge): the rules are sent whole.
        return self._call(
            f"patching HTTPRoute {self.model}",
            self._custom.patch_namespaced_custom_object,
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            plural="httproutes",
            name=self.model,
            body=body,
        )

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
        return ServingStatus(live=self.live_color(), colors={c: self._state(c, self._deployment(c)) for c in Color}, weights=self.traffic_weights())

    # -- the HTTPRoute's weights ------------------------------------------------------------

    def _route_weights(self, route: dict[str, Any]) -> tuple[int, int]:
        """The weights of the live and the preview Service in the route (a backend absent: 0)."""
        preview = preview_service_name(self.model)
        weights = {self.model: 0, preview: 0}
        found = False
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("name") in weights and ref.get("kind", "Service") == "Service":
                    weights[ref["name"]] += int(ref.get("weight", 1))
                    found = True
        if not found:
            raise KubernetesApiError(f"HTTPRoute {self.model} in namespace {self.namespace} sends nothing to the Services {self.model} or {preview}")
        return weights[self.model], weights[preview]

    def traffic_weights(self) -> dict[Color, int]:
        """Percent of live traffic per colour while the route splits it between the live and the preview colour; empty otherwise."""
        if not self.gateway:
            return {}
        live_weight, preview_weight = self._route_weights(self._route())
        if not preview_weight:
            return {}
        live, preview = self.live_color(), self._selected_color(self._service(preview_service_name(self.model)))
        if preview is None or preview is live:
            return {}
        total = live_weight + preview_weight
        shares = {live: round(100 * live_weight / total), preview: round(100 * preview_weight / total)}
        return {color: share for color, share in shares.items() if color is not None and share > 0}

    def _set_route_weights(self, live_weight: int, preview_weight: int) -> bool:
        """Put the two weights in the route (its other rules and fields untouched); ``False`` when they already were."""
        from kubernetes.client.exceptions import ApiException

        preview = preview_service_name(self.model)
        wanted = {self.model: live_weight, preview: preview_weight}
        for _ in range(_SWITCH_ATTEMPTS):
            route = self._route()
            if self._route_weights(route) == (live_weight, preview_weight):
                return False
            rules = []
            for rule in route["spec"]["rules"]:
                refs = [{**ref, "weight": wanted[ref["name"]]} if ref.get("name") in wanted else ref for ref in rule.get("backendRefs") or []]
                rules.append({**rule, "backendRefs": refs} if "backendRefs" in rule else rule)
            try:
                self._patch_route({"metadata": {"resourceVersion": route["metadata"]["resourceVersion"]}, "spec": {"rules": rules}})
            except ApiException as err:  # 409: someone changed the route since we read it; re-read, re-decide
                if err.status != 409:
                    raise
                continue
            return True
        raise SwitchConflictError(f"the HTTPRoute {self.model} changed under us {_SWITCH_ATTEMPTS} times; retry")

    def set_weights(self, weights: dict[Color, int], *, sticky_cookie: str | None = None) -> None:
        """Split live traffic between the live colour and the preview colour (a canary step): the route's two weights; 100 on one colour is a switch."""
        if not self.gateway:
            return super().set_weights(weights, sticky_cookie=sticky_cookie)  # refused: the Service alone cannot split
        if sticky_cookie:
            raise SplitUnsupportedError(
                f"{self.model}: an A/B test keeps each client on its version by a cookie; the Gateway API's standard HTTPRoute has no session persistence"
            )
        if set(weights) - set(Color) or sum(weights.values()) != 100 or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be percentages of blue and green summing to 100, got {weights}")
        whole = [c for c, w in weights.items() if w == 100]
        if whole:
            self.switch(whole[0])
            return
        live = self.live_color()
        if live is None:
            raise LiveColorError(f"refusing to split {self.model}'s live traffic {weights}: the Service {self.model} selects no colour")
        other = live.other
        preview = self._selected_color(self._service(preview_service_name(self.model)))
        if preview is not other:
            raise ColorNotReadyError(f"refusing to send {weights[other]}% of {self.model}'s live traffic to {other}: the preview Service selects {preview}")
        state = self.is_ready(other)
        if not state.ready:
            raise ColorNotReadyError(f"refusing to send {weights[other]}% of {self.model}'s live traffic to {other}: {state.detail}")
        self._set_route_weights(weights[live], weights[other])

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
                # A canary rolled back (or a retried switch): the split ends, the live colour stays.
                return SwitchOutcome.SWITCHED if self.gateway and self._set_route_weights(100, 0) else SwitchOutcome.ALREADY_LIVE
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
            if self.gateway:  # both Services now select the new colour: the preview's share goes back to the live one
                self._set_route_weights(100, 0)
            return SwitchOutcome.SWITCHED
        raise SwitchConflictError(f"the Service {self.model} changed under us {_SWITCH_ATTEMPTS} times; retry")

    def scale_down(self, color: Color) -> bool:
        self.refuse_live(color, f"scale down {deployment_name(self.model, color)}")
        if self.is_ready(color).replicas == 0:
            return False
        self._patch_deployment(color, {"spec": {"replicas": 0}})
        return True
