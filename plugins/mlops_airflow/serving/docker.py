"""The Docker serving backend (the compose stack): scoring containers behind a Caddy router container.

Containers ``<model>-blue`` and ``<model>-green`` run the model server
(:mod:`mlops_airflow.serving.model_server`: MLflow's scoring API, the version loaded safely) on the shared
Docker network; their labels say which model version they run, and Docker's health check
(``/ping``) says whether they are ready. The router container is Caddy: this model's
server on ``live_port`` proxies to the live colour, and a switch is one change of its proxy
through Caddy's admin API, read back afterwards. A canary step or an A/B test splits it
between the two colours by weight (the live colour's upstream stays first: a split never
changes which colour is live), with a keyed cookie for an A/B test whose secret lives in the
router's configuration only. The containers and the router are the
state: nothing is kept beside them, so any worker can pick up where another stopped.

Docker calls go through the Docker provider's hook; they are create, start, inspect, stop
and remove on the two named containers, and a pull when their image is missing.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.serving.admin_http import admin_request
from mlops_airflow.serving.base import BlueGreenBackend, Color, ColorNotReadyError, ColorState, LiveColorError, ServingStatus, StickySplit, SwitchOutcome
from mlops_airflow.serving.inference_log import ROUTE_HEADER, ROUTE_LIVE

if TYPE_CHECKING:
    from docker import APIClient

    from mlops_airflow.serving.inference_log import InferenceLogSettings
    from mlops_airflow.serving.model_server import Capacity
    from mlops_airflow.specs import DockerServingSpec

LABEL_MODEL = "mlops-airflow.model"
LABEL_COLOR = "mlops-airflow.color"
LABEL_VERSION = "mlops-airflow.model-version"
LABEL_URI = "mlops-airflow.model-uri"
# Where the Airflow image (include/airflow/Dockerfile), which the compose stack serves with, keeps the package.
IMAGE_PACKAGE_PATH = "/opt/airflow/plugins"
_NS = 1_000_000_000  # Docker's health check durations are in nanoseconds


class DockerServingError(MlopsError):
    """The Docker Engine or the router refused or failed a call; retryable."""


def container_name(model: str, color: Color) -> str:
    return f"{model}-{color}"


def _admin(address: str, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    try:
        return admin_request(address, method, path, body)
    except OSError as err:
        raise DockerServingError(f"the serving router's admin API at {address} did not answer: {err}") from err


class DockerServingBackend(BlueGreenBackend):
    """
    Blue-green serving of one model on a Docker host.

    :param model: the model name; it names the containers and the router's upstream.
    :param spec: the spec's ``serving.docker`` section.
    :param api_client: a ``docker.APIClient`` (``DockerHook(...).api_client``).
    :param env: environment of the model servers (the MLflow URI and credentials): all they get
        from the worker, besides what :meth:`container_env` adds.
    """

    def __init__(
        self,
        *,
        model: str,
        spec: DockerServingSpec,
        api_client: APIClient,
        env: dict[str, str] | None = None,
        capacity: Capacity | None = None,
        inference_log: InferenceLogSettings | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.api = api_client
        self.env = env or {}
        self.capacity = capacity
        self.inference_log = inference_log

    @classmethod
    def from_hook(
        cls,
        *,
        model: str,
        spec: DockerServingSpec,
        env: dict[str, str] | None = None,
        docker_conn_id: str | None = None,
        capacity: Capacity | None = None,
        inference_log: InferenceLogSettings | None = None,
    ) -> DockerServingBackend:
        """Build the client with the Docker provider's hook; ``docker_conn_id`` only to log in to a registry."""
        from airflow.providers.docker.hooks.docker import DockerHook

        hook = DockerHook(docker_conn_id=docker_conn_id, base_url=spec.base_url)
        return cls(model=model, spec=spec, api_client=hook.api_client, env=env, capacity=capacity, inference_log=inference_log)

    # -- Docker ---------------------------------------------------------------------------

    def _inspect(self, color: Color) -> dict[str, Any] | None:
        from docker.errors import APIError, NotFound

        try:
            return self.api.inspect_container(container_name(self.model, color))
        except NotFound:
            return None
        except APIError as err:
            raise DockerServingError(f"inspecting {container_name(self.model, color)} failed: {err}") from err

    def container_env(self) -> dict[str, str]:
        """A server container's whole environment: MLflow's URI and credentials, a home, the package, no pickle."""
        from mlops_airflow.core.model_loading import SAFE_MODEL_ENV

        return {**self.env, "HOME": "/tmp", "PYTHONPATH": IMAGE_PACKAGE_PATH, **SAFE_MODEL_ENV}  # noqa: S108 - a tmpfs

    def _create(self, color: Color, version: str, model_uri: str, estimator_kind: str) -> str:
        from docker.errors import APIError, ImageNotFound
        from docker.utils import parse_repository_tag

        from mlops_airflow.serving.model_server import server_command

        name = container_name(self.model, color)
        port = self.spec.container_port
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/ping', timeout=2)"
        arguments = {
            "image": self.spec.image,
            "name": name,
            "command": server_command(
                "python",
                model_uri=model_uri,
                estimator_kind=estimator_kind,
                host="0.0.0.0",  # noqa: S104 - inside its container
                port=port,
                capacity=self.capacity.for_container() if self.capacity else None,
                color=str(color),
                identity=(self.model, str(version)),
                inference_log=self.inference_log,
            ),
            "environment": self.container_env(),
            "labels": {LABEL_MODEL: self.model, LABEL_COLOR: str(color), LABEL_VERSION: str(version), LABEL_URI: model_uri},
            "healthcheck": {"test": ["CMD", "python", "-c", probe], "interval": 2 * _NS, "timeout": 3 * _NS, "retries": 3, "start_period": 300 * _NS},
            "host_config": self.api.create_host_config(
                network_mode=self.spec.network,
                restart_policy={"Name": "unless-stopped"},
                read_only=True,
                tmpfs={"/tmp": "size=2g"},  # noqa: S108 - a tmpfs, the only writable path
                cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"],
            ),
        }
        try:
            try:
                created = self.api.create_container(**arguments)
            except ImageNotFound:
                repository, tag = parse_repository_tag(self.spec.image)
                self.api.pull(repository, tag=tag or "latest")
                created = self.api.create_container(**arguments)
            self.api.start(created["Id"])
        except APIError as err:
            raise DockerServingError(f"starting {name} with {self.model} v{version} failed: {err}") from err
        return created["Id"]

    def _remove(self, color: Color) -> None:
        from docker.errors import APIError, NotFound

        name = container_name(self.model, color)
        try:
            self.api.stop(name, timeout=30)
            self.api.remove_container(name, force=True)
        except NotFound:
            return
        except APIError as err:
            raise DockerServingError(f"removing {name} failed: {err}") from err

    def _state(self, color: Color, container: dict[str, Any] | None) -> ColorState:
        if container is None:
            return ColorState(color, None, False, 0, "no container")
        labels = (container.get("Config") or {}).get("Labels") or {}
        version = labels.get(LABEL_VERSION)
        state = container.get("State") or {}
        if not state.get("Running"):
            return ColorState(color, version, False, 0, f"{state.get('Status', 'stopped')} (exit code {state.get('ExitCode')})")
        health = (state.get("Health") or {}).get("Status", "none")
        return ColorState(color, version, health == "healthy", 1, f"health {health}")

    # -- the router -----------------------------------------------------------------------

    @property
    def _upstream_id(self) -> str:
        return f"{self.model}-live"

    def _dial(self, color: Color) -> str:
        return f"{container_name(self.model, color)}:{self.spec.container_port}"

    def _handler(self, weights: dict[Color, int], live: Color, sticky: StickySplit | None = None) -> dict[str, Any]:
        """The reverse proxy of this model's live port: the live colour's upstream first, then the other's where ``weights`` split.

        A split is Caddy's weighted round robin (the weights reduced by their greatest common
        divisor, so that 10 % is one request in ten rather than runs of ten) and, for an A/B test,
        a keyed cookie in front of it that keeps each client on the colour it was first given.
        """
        order = [live, *(c for c in Color if c is not live and weights.get(c, 0) > 0)]
        proxy: dict[str, Any] = {
            "@id": self._upstream_id,
            "handler": "reverse_proxy",
            "upstreams": [{"dial": self._dial(color)} for color in order],
            # Scoring has no side effects: a request the outgoing colour dropped may be sent again.
            "load_balancing": {"retries": 2, "try_interval": "20ms", "retry_match": [{"method": ["GET", "HEAD", "POST"]}]},
            # What comes through the live port is live traffic in the inference log (a colour's own port is "preview").
            "headers": {"request": {"set": {ROUTE_HEADER: [ROUTE_LIVE]}}},
        }
        if len(order) > 1:
            divisor = math.gcd(*(weights.get(c, 0) for c in order))
            policy: dict[str, Any] = {"policy": "weighted_round_robin", "weights": [weights.get(c, 0) // divisor for c in order]}
            if sticky is not None:
                policy = {"policy": "cookie", "name": sticky.cookie, "secret": sticky.secret, "fallback": policy}
            proxy["load_balancing"]["selection_policy"] = policy
        return proxy

    def _server(self, color: Color) -> dict[str, Any]:
        return {"listen": [f":{self.spec.live_port}"], "routes": [{"handle": [self._handler({color: 100}, color)]}]}

    def _live_handler(self) -> dict[str, Any] | None:
        """This model's reverse proxy as the router holds it; ``None`` before the first switch."""
        status, body = _admin(self.spec.router_admin_url, "GET", f"/id/{self._upstream_id}")
        if status == 404:
            return None
        if status != 200:
            raise DockerServingError(f"the serving router answered {status} for {self.model}'s upstream: {body[:300]!r}")
        return json.loads(body or b"null") or None

    def proxy_weights(self) -> dict[Color, int]:
        """Percent of live traffic per colour, read from the router; ``{}`` before the first switch."""
        handler = self._live_handler()
        if handler is None:
            return {}
        colors = {self._dial(c): c for c in Color}
        upstreams = [colors.get(u.get("dial")) for u in handler.get("upstreams") or []]
        policy = (handler.get("load_balancing") or {}).get("selection_policy") or {}
        if policy.get("policy") == "cookie":  # a sticky split: new clients are split by its fallback's weights
            policy = policy.get("fallback") or {}
        weights = policy.get("weights") if policy.get("policy") == "weighted_round_robin" else None
        if weights is None or len(weights) != len(upstreams):
            weights = [100] + [0] * (len(upstreams) - 1)  # one upstream (the first, should there be more) takes everything
        total = sum(weights) or 1
        return {c: round(100 * w / total) for c, w in zip(upstreams, weights, strict=True) if c is not None and w > 0}

    def proxy_color(self) -> Color | None:
        """The colour live before any split (the router's first upstream of this model); ``None`` before the first switch."""
        handler = self._live_handler()
        if handler is None:
            return None
        colors = {self._dial(c): c for c in Color}
        return next((colors[u["dial"]] for u in handler.get("upstreams") or [] if u.get("dial") in colors), None)

    def traffic_weights(self) -> dict[Color, int]:
        weights = self.proxy_weights()
        return weights if len(weights) > 1 else {}

    def _sticky_secret(self, cookie: str) -> str:
        """The key of the split's cookie: the one the router already holds for this cookie (a retried step keeps the groups), or a new one.

        It lives in the router's configuration only, never in a tag or a log.
        """
        import secrets

        policy = ((self._live_handler() or {}).get("load_balancing") or {}).get("selection_policy") or {}
        if policy.get("policy") == "cookie" and policy.get("name") == cookie and policy.get("secret"):
            return str(policy["secret"])
        return secrets.token_hex(32)

    def _put_handler(self, handler: dict[str, Any], what: str) -> None:
        status, body = _admin(self.spec.router_admin_url, "PATCH", f"/id/{self._upstream_id}", handler)
        if status != 200:
            raise DockerServingError(f"the serving router refused {what} of {self.model}: {status} {body[:300]!r}")

    def set_weights(self, weights: dict[Color, int], *, sticky_cookie: str | None = None) -> None:
        """Split live traffic between the colours (a canary step, an A/B test): one change of the router; 100 on one colour is a switch."""
        if set(weights) - set(Color) or sum(weights.values()) != 100 or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be percentages of blue and green summing to 100, got {weights}")
        whole = [c for c, w in weights.items() if w == 100]
        if whole:
            self.switch(whole[0])
            return
        live = self.proxy_color()
        if live is None:
            raise LiveColorError(f"refusing to split {self.model}'s live traffic {weights}: nothing is live yet")
        for color, weight in weights.items():
            state = self.is_ready(color)
            if weight > 0 and not state.ready:
                raise ColorNotReadyError(f"refusing to send {weight}% of {self.model}'s live traffic to {color}: {state.detail}")
        sticky = StickySplit(sticky_cookie, self._sticky_secret(sticky_cookie)) if sticky_cookie else None
        self._put_handler(self._handler(weights, live, sticky), f"the split {weights}")
        expected = {c: w for c, w in weights.items() if w > 0}
        if (observed := self.proxy_weights()) != expected:
            raise DockerServingError(f"the serving router reads back {observed} after the split {weights} of {self.model}")

    # -- the protocol ---------------------------------------------------------------------

    def status(self) -> ServingStatus:
        return ServingStatus(live=self.proxy_color(), colors={color: self.is_ready(color) for color in Color}, weights=self.traffic_weights())

    def is_ready(self, color: Color) -> ColorState:
        return self._state(color, self._inspect(color))

    def deploy(self, color: Color, version: str, model_uri: str, *, estimator_kind: str) -> bool:
        self.refuse_live(color, f"deploy {self.model} v{version} onto {color}")
        container = self._inspect(color)
        if container is not None:
            labels = (container.get("Config") or {}).get("Labels") or {}
            running = (container.get("State") or {}).get("Running")
            if running and labels.get(LABEL_VERSION) == str(version) and labels.get(LABEL_URI) == model_uri:
                return False
            self._remove(color)
        self._create(color, str(version), model_uri, estimator_kind)
        return True

    def live_color(self) -> Color | None:
        return self.proxy_color()

    def color_name(self, color: Color) -> str:
        return container_name(self.model, color)

    def cannot_become_ready(self, state: ColorState) -> bool:
        return state.replicas == 0 or state.detail == "health unhealthy"

    def not_ready_detail(self, color: Color) -> str:
        return self._log_tail(color)

    def _log_tail(self, color: Color) -> str:
        try:
            tail = self.api.logs(container_name(self.model, color), tail=15).decode(errors="replace").strip()
        except Exception:  # the tail is a courtesy; the error above is what matters
            return ""
        return f"; log tail:\n{tail}" if tail else ""

    def preview_url(self, color: Color) -> str:
        return f"http://{container_name(self.model, color)}:{self.spec.container_port}"

    def live_url(self) -> str:
        return f"http://{self.spec.router_host}:{self.spec.live_port}"

    def switch(self, color: Color) -> SwitchOutcome:
        """All live traffic to ``color``: the end of a split too (a canary's last step, an A/B test decided, a rollback)."""
        current, split = self.proxy_color(), bool(self.traffic_weights())
        if current is color and not split:
            return SwitchOutcome.ALREADY_LIVE
        state = self.is_ready(color)
        if not state.ready:
            raise ColorNotReadyError(f"refusing to switch {self.model} to {color}: {state.detail}")
        admin = self.spec.router_admin_url
        if current is None:  # the first release: this model's server appears on the router
            status, body = _admin(admin, "PUT", f"/config/apps/http/servers/{self.model}", self._server(color))
            if status == 409:
                status, body = _admin(admin, "PATCH", f"/config/apps/http/servers/{self.model}", self._server(color))
        else:  # one change of this model's proxy: its upstream, and no split left
            status, body = _admin(admin, "PATCH", f"/id/{self._upstream_id}", self._handler({color: 100}, color))
        if status != 200:
            raise DockerServingError(f"the serving router refused the switch of {self.model} to {color}: {status} {body[:300]!r}")
        after = self.proxy_color()
        if after is not color or self.traffic_weights():
            raise DockerServingError(f"the serving router reads back {after} after the switch of {self.model} to {color}")
        return SwitchOutcome.SWITCHED

    def scale_down(self, color: Color) -> bool:
        self.refuse_live(color, f"scale down {container_name(self.model, color)}")
        if self._inspect(color) is None:
            return False
        self._remove(color)
        return True
