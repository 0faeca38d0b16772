"""The Kubernetes serving backend against a fake API server, and the manifests it ships."""

from __future__ import annotations

import random

import kubernetes_validate
import pytest
from fake_kubernetes import FakeCluster, FakeKubernetesServer
from kubernetes.client.exceptions import ApiException
from sampling import replay_hint, sampled

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.serving.base import Color, ColorNotReadyError, LiveColorError, SwitchOutcome
from mlops_airflow.serving.kubernetes import KubernetesServingBackend, rollout_ready
from mlops_airflow.serving.kubernetes_manifests import serving_manifests, switch_role_rules

MODEL, NAMESPACE = "churn", "mlops"
K8S_VERSION = "1.33"


def manifests():
    return serving_manifests(
        model=MODEL,
        namespace=NAMESPACE,
        image="ghcr.io/mlops-airflow/model-server:0.1.0",
        tracking_uri="http://mlflow.mlops.svc:5000",
        switcher_service_account="airflow-worker",
        switcher_namespace="airflow",
    )


def new_cluster(live_version="1", rollout_reads=2) -> FakeCluster:
    """Blue live with v1 at two replicas, green scaled to zero: the state after a first release."""
    cluster = FakeCluster(NAMESPACE, rollout_reads=rollout_reads)
    for doc in manifests():
        if doc["kind"] in ("Deployment", "Service"):
            if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-blue"):
                doc["spec"]["replicas"] = 2
                doc["spec"]["template"]["metadata"]["annotations"]["mlops-airflow/model-version"] = live_version
            cluster.add(doc)
    return cluster


def backend_for(server: FakeKubernetesServer, timeout=2.0) -> KubernetesServingBackend:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = server.url
    return KubernetesServingBackend(model=MODEL, namespace=NAMESPACE, api_client=client.ApiClient(configuration), request_timeout=timeout)


@pytest.fixture
def cluster():
    cluster = new_cluster()
    with FakeKubernetesServer(cluster) as server:
        yield cluster, backend_for(server)


class TestRolloutReady:
    @pytest.mark.parametrize(
        ("deployment", "ready", "why"),
        [
            pytest.param({"spec": {"replicas": 0}}, False, "scaled to zero", id="zero"),
            pytest.param(
                {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 1}}, False, "not observed", id="not-observed"
            ),
            pytest.param(
                {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "updatedReplicas": 1}},
                False,
                "1 of 2 replicas updated",
                id="updating",
            ),
            pytest.param(
                {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3}},
                False,
                "old replicas pending",
                id="old-pods",
            ),
            pytest.param(
                {
                    "metadata": {"generation": 2},
                    "spec": {"replicas": 2},
                    "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1},
                },
                False,
                "1 of 2 updated replicas available",
                id="unavailable",
            ),
            pytest.param(
                {
                    "metadata": {"generation": 2},
                    "spec": {"replicas": 2},
                    "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2},
                },
                True,
                "2 of 2",
                id="ready",
            ),
        ],
    )
    def test_rules(self, deployment, ready, why):
        ok, detail = rollout_ready(deployment)
        assert ok is ready
        assert why in detail


class TestManifests:
    def test_every_manifest_validates(self):
        kinds = []
        for doc in manifests():
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            kinds.append(doc["kind"])
        assert kinds == ["ServiceAccount", "Deployment", "Deployment", "Service", "Service", "NetworkPolicy", "Role", "RoleBinding"]

    def test_role_is_least_privilege(self):
        (role,) = [d for d in manifests() if d["kind"] == "Role"]
        assert role["metadata"]["namespace"] == NAMESPACE
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"] + rule["resourceNames"]
            assert set(rule["verbs"]) == {"get", "patch"}
            assert rule["resourceNames"]
        assert {r for rule in role["rules"] for r in rule["resources"]} == {"services", "deployments"}  # no secrets

    def test_model_servers_load_safely_and_get_only_what_they_need(self):
        for deployment in [d for d in manifests() if d["kind"] == "Deployment"]:
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["command"][:3] == ["python", "-m", "mlops_airflow.serving.model_server"]
            assert "args" not in container  # the model URI and kind come from the environment, never $(VAR) in args
            env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
            assert set(env) == {
                "MODEL_URI",
                "MODEL_ESTIMATOR_KIND",
                "MLFLOW_TRACKING_URI",
                "MLFLOW_TRACKING_USERNAME",
                "MLFLOW_TRACKING_PASSWORD",
                "MLFLOW_ALLOW_PICKLE_DESERIALIZATION",
                "HOME",
                "MLOPS_SERVING_WORKERS",
                "MLOPS_SERVING_MAX_PENDING",
                "MLOPS_SERVING_MAX_BATCH_ROWS",
                "MLOPS_SERVING_MAX_WAIT_SECONDS",
            }
            assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"

    def test_each_pod_runs_as_many_workers_as_the_cpus_it_requests(self):
        from mlops_airflow.serving.kubernetes_manifests import main

        for argv, workers in (([], "2"), (["--workers", "4"], "4")):
            import contextlib
            import io

            import yaml

            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                main(["--model", "churn", "--image", "img:1", "--tracking-uri", "http://mlflow", *argv])
            for deployment in [d for d in yaml.safe_load_all(out.getvalue()) if d["kind"] == "Deployment"]:
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                env = {e["name"]: e.get("value") for e in container["env"]}
                assert env["MLOPS_SERVING_WORKERS"] == container["resources"]["requests"]["cpu"] == workers

    def test_model_servers_are_reachable_on_the_serving_port_only(self):
        (policy,) = [d for d in manifests() if d["kind"] == "NetworkPolicy"]
        servers = [d["spec"]["template"] for d in manifests() if d["kind"] == "Deployment"]
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert all(selector.items() <= server["metadata"]["labels"].items() for server in servers)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        ports = {port["containerPort"] for server in servers for port in server["spec"]["containers"][0]["ports"]}
        assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": port}]} for port in ports]

    def test_model_servers_get_no_api_token(self):
        for doc in manifests():
            if doc["kind"] == "Deployment":
                pod = doc["spec"]["template"]["spec"]
                assert pod["automountServiceAccountToken"] is False
                assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


class TestBackend:
    def test_status(self, cluster):
        _, backend = cluster
        status = backend.status()
        assert (status.live, status.idle, status.live_version) == (Color.BLUE, Color.GREEN, "1")
        assert status.colors[Color.GREEN].ready is False

    def test_deploy_rolls_out_the_idle_colour_and_points_preview_at_it(self, cluster):
        fake, backend = cluster
        assert backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting") is True
        green = fake.get("Deployment", "churn-green")
        assert green["spec"]["replicas"] == 2
        (container,) = green["spec"]["template"]["spec"]["containers"]
        assert {"name": "MODEL_URI", "value": "models:/churn/2"} in container["env"]
        assert {"name": "MODEL_ESTIMATOR_KIND", "value": "hist_gradient_boosting"} in container["env"]
        assert fake.get("Service", "churn-preview")["spec"]["selector"]["color"] == "green"
        assert backend.wait_ready(Color.GREEN, timeout=5, poll=0.01).version == "2"
        assert backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting") is False  # already there: no patch

    def test_deploy_sets_the_specs_capacity_on_the_pods_and_keeps_the_other_variables(self, cluster):
        from mlops_airflow.serving.model_server import Capacity

        fake, backend = cluster
        backend.capacity = Capacity(workers=None, max_pending=16)  # the spec's 0: a pod gets the container default
        backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        (container,) = fake.get("Deployment", "churn-green")["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert (env["MLOPS_SERVING_WORKERS"], env["MLOPS_SERVING_MAX_PENDING"], env["MODEL_URI"]) == ("2", "16", "models:/churn/2")
        assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"  # merged by name, not replaced

    def test_never_deploys_onto_or_scales_down_the_live_colour(self, cluster):
        _, backend = cluster
        with pytest.raises(LiveColorError):
            backend.deploy(Color.BLUE, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        with pytest.raises(LiveColorError):
            backend.scale_down(Color.BLUE)

    def test_switch_is_refused_when_not_ready_and_a_no_op_when_live(self, cluster):
        fake, backend = cluster
        with pytest.raises(ColorNotReadyError, match="scaled to zero"):
            backend.switch(Color.GREEN)
        assert backend.switch(Color.BLUE) is SwitchOutcome.ALREADY_LIVE
        assert [r["verb"] for r in fake.requests].count("patch") == 0

    def test_switch_rereads_on_conflict(self, cluster):
        fake, backend = cluster
        backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        backend.wait_ready(Color.GREEN, timeout=5, poll=0.01)
        fake.faults[len(fake.requests) + 2] = "conflict"  # read service, read green, then the patch conflicts
        assert backend.switch(Color.GREEN) is SwitchOutcome.SWITCHED
        assert fake.selector_color() == "green"
        assert [r["verb"] for r in fake.requests[-6:]].count("patch") == 2  # the refused one and the one that landed

    def test_wait_ready_names_the_reason(self, cluster):
        fake, backend = cluster
        fake.stuck.add("churn-green")
        backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        with pytest.raises(ColorNotReadyError, match="churn-green is not ready after 0 s"):
            backend.wait_ready(Color.GREEN, timeout=0.05, poll=0.01)

    def test_scale_down(self, cluster):
        fake, backend = cluster
        backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        assert backend.scale_down(Color.GREEN) is True
        assert fake.get("Deployment", "churn-green")["spec"]["replicas"] == 0
        assert backend.scale_down(Color.GREEN) is False


# -- random fault schedules: the release as the DAG runs it, with task retries ----------------

RETRIES = 3
FAULTS = ("500", "timeout_before", "timeout_after", "conflict")
SCHEDULES = 200  # random schedules, seeds 0..199: all of them with MLOPS_TEST_FULL=1, a sample otherwise
SAMPLED_SCHEDULES = 20


class StepFailed(Exception):
    pass


# What a step of the release may raise under the injected faults: the backend's errors (5xx and
# timeouts become KubernetesApiError), a 409 the switch did not absorb, a failed smoke or verify.
# Anything else is a bug, and fails the test instead of being retried or rolled back.
STEP_ERRORS = (MlopsError, ApiException, StepFailed)


def attempt(step, retries=RETRIES):
    """A task with Airflow-style retries: an error is retried, the last one raised."""
    for left in range(retries, -1, -1):
        try:
            return step()
        except STEP_ERRORS:
            if not left:
                raise
    return None


def release(backend, version: str, *, smoke_ok: bool, verify_ok: bool) -> str:
    """deploy idle -> wait ready -> smoke -> switch -> verify; roll back on any failure after the switch began."""
    status = attempt(backend.status)
    if status.live_version == version and status.colors[status.live].ready:
        return "already_live"
    live, idle = status.live, status.idle
    attempt(lambda: backend.deploy(idle, version, f"models:/churn/{version}", estimator_kind="hist_gradient_boosting"))
    attempt(lambda: backend.wait_ready(idle, timeout=0.3, poll=0.01), retries=1)
    if not smoke_ok:
        raise StepFailed("smoke test failed")
    try:
        attempt(lambda: backend.switch(idle))
        if not verify_ok:
            raise StepFailed("live verification failed")
    except STEP_ERRORS:
        attempt(lambda: backend.switch(live), retries=6)
        return "rolled_back"
    return "switched"


def allowed_by_role(request, rules) -> bool:
    return any(
        request["group"] in rule["apiGroups"]
        and request["resource"] in rule["resources"]
        and request["name"] in rule["resourceNames"]
        and request["verb"] in rule["verbs"]
        for rule in rules
    )


def fault_schedule(seed: int) -> dict:
    """The faults, the stuck rollout and the smoke and verify results of schedule ``seed``."""
    rng = random.Random(seed)
    rollout_reads = rng.randint(1, 4)
    faults = {i: rng.choice(FAULTS) for i in range(30) if rng.random() < 0.15}
    stuck = rng.random() < 0.1
    smoke_ok, verify_ok = rng.random() > 0.1, rng.random() > 0.15
    return {"rollout_reads": rollout_reads, "faults": faults, "stuck": stuck, "smoke_ok": smoke_ok, "verify_ok": verify_ok}


# One schedule per path, by construction (no faults): every run takes all three.
PATH_SCHEDULES = {
    "failed-smoke": {"rollout_reads": 2, "faults": {}, "stuck": False, "smoke_ok": False, "verify_ok": True},
    "failed-verify": {"rollout_reads": 2, "faults": {}, "stuck": False, "smoke_ok": True, "verify_ok": False},
    "clean": {"rollout_reads": 2, "faults": {}, "stuck": False, "smoke_ok": True, "verify_ok": True},
}


def schedules_to_run() -> list[tuple[str, dict]]:
    """The three path schedules, then random ones: a sample drawn with the session's seed (all 200 with MLOPS_TEST_FULL=1)."""
    seeds = sampled(range(SCHEDULES), SAMPLED_SCHEDULES, salt="fault-schedules")
    return [*PATH_SCHEDULES.items(), *((f"seed {seed}", fault_schedule(seed)) for seed in seeds)]


def test_random_fault_schedules():
    rules = switch_role_rules(MODEL)
    outcomes = {}
    for name, plan in schedules_to_run():
        cluster = new_cluster(rollout_reads=plan["rollout_reads"])
        cluster.fault_delay = 0.12
        cluster.faults = plan["faults"]
        if plan["stuck"]:
            cluster.stuck.add("churn-green")
        where = f"schedule {name}; {replay_hint()}"
        with FakeKubernetesServer(cluster) as server:
            backend = backend_for(server, timeout=0.08)
            try:
                outcome = release(backend, "2", smoke_ok=plan["smoke_ok"], verify_ok=plan["verify_ok"])
            except STEP_ERRORS as err:  # failed before the switch: nothing may have moved
                outcome = f"failed before switch: {type(err).__name__}"
                assert cluster.selector_color() == "blue", (where, outcome)
            outcomes[outcome.split(":")[0]] = outcomes.get(outcome.split(":")[0], 0) + 1
            assert cluster.unready_switches == [], (where, cluster.unready_switches)
            assert cluster.selector_color() in ("blue", "green"), where
            if outcome == "rolled_back":
                assert cluster.selector_color() == "blue", where
            if outcome == "switched":
                assert cluster.selector_color() == "green", where
                cluster.faults = {}
                before = len(cluster.requests)
                assert release(backend, "2", smoke_ok=True, verify_ok=True) == "already_live"
                assert [r for r in cluster.requests[before:] if r["verb"] != "get"] == [], where
            outside = [r for r in cluster.requests if not allowed_by_role(r, rules)]
            assert outside == [], (where, outside)
    print(f"\nfault schedules: {outcomes} ({replay_hint()})")
    # The schedules exercised every path.
    assert set(outcomes) == {"switched", "rolled_back", "failed before switch"}


# -- canary weights through a Gateway API HTTPRoute -------------------------------------------


def gateway_cluster() -> FakeCluster:
    """As :func:`new_cluster`, with the HTTPRoute the manifests render for a Gateway."""
    from mlops_airflow.serving.kubernetes_manifests import live_route
    from mlops_airflow.specs import GatewayRef

    cluster = new_cluster()
    cluster.add(live_route(MODEL, NAMESPACE, GatewayRef("public", "gateways")))
    return cluster


@pytest.fixture
def gateway():
    from kubernetes import client

    cluster = gateway_cluster()
    with FakeKubernetesServer(cluster) as server:
        configuration = client.Configuration()
        configuration.host = server.url
        yield cluster, KubernetesServingBackend(model=MODEL, namespace=NAMESPACE, api_client=client.ApiClient(configuration), gateway=True)


def route_weights(cluster: FakeCluster) -> dict[str, int]:
    (rule,) = cluster.get("HTTPRoute", MODEL)["spec"]["rules"]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


class TestGatewayCanary:
    def test_a_canary_weights_the_preview_service_and_the_switch_ends_the_split(self, gateway):
        from gateway_api import validate_httproute

        fake, backend = gateway
        backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        backend.wait_ready(Color.GREEN, timeout=5, poll=0.01)

        backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
        assert route_weights(fake) == {"churn": 90, "churn-preview": 10}
        validate_httproute(fake.view(fake.get("HTTPRoute", MODEL)))  # the patched route is still a valid HTTPRoute
        status = backend.status()
        assert (status.live, status.weights) == (Color.BLUE, {Color.BLUE: 90, Color.GREEN: 10})
        with pytest.raises(LiveColorError, match="takes 10% of live traffic"):
            backend.scale_down(Color.GREEN)
        with pytest.raises(LiveColorError):
            backend.deploy(Color.GREEN, "3", "models:/churn/3", estimator_kind="hist_gradient_boosting")

        assert backend.switch(Color.GREEN) is SwitchOutcome.SWITCHED
        assert (fake.selector_color(), route_weights(fake)) == ("green", {"churn": 100, "churn-preview": 0})
        assert (backend.status().live, backend.status().weights) == (Color.GREEN, {})
        # The route's parent and its live marking were never touched.
        route = fake.get("HTTPRoute", MODEL)["spec"]
        assert route["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateways"}]
        assert route["rules"][0]["filters"][0]["requestHeaderModifier"] == {"set": [{"name": "x-mlops-route", "value": "live"}]}
        assert fake.unready_switches == []

    def test_a_failed_canary_goes_back_to_the_live_colour(self, gateway):
        fake, backend = gateway
        backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        backend.wait_ready(Color.GREEN, timeout=5, poll=0.01)
        backend.set_weights({Color.BLUE: 50, Color.GREEN: 50})
        assert backend.switch(Color.BLUE) is SwitchOutcome.SWITCHED  # the split ends; blue was live all along
        assert (fake.selector_color(), route_weights(fake)) == ("blue", {"churn": 100, "churn-preview": 0})
        assert backend.switch(Color.BLUE) is SwitchOutcome.ALREADY_LIVE

    def test_no_split_onto_a_colour_that_is_not_ready_or_not_the_previews_and_no_ab(self, gateway):
        from mlops_airflow.serving.base import SplitUnsupportedError

        fake, backend = gateway
        with pytest.raises(ColorNotReadyError, match="the preview Service selects None|scaled to zero"):
            backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
        fake.get("Service", "churn-preview")["spec"]["selector"]["color"] = "blue"
        with pytest.raises(ColorNotReadyError, match="the preview Service selects blue"):
            backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
        with pytest.raises(SplitUnsupportedError, match="no session persistence"):
            backend.set_weights({Color.BLUE: 90, Color.GREEN: 10}, sticky_cookie="mlops_ab_v2")
        assert route_weights(fake) == {"churn": 100, "churn-preview": 0}

    def test_the_route_patch_rereads_on_conflict(self, gateway):
        fake, backend = gateway
        backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
        backend.wait_ready(Color.GREEN, timeout=5, poll=0.01)
        route = fake.get("HTTPRoute", MODEL)
        original = backend._patch_route

        def concurrent_then_patch(body):
            if not getattr(concurrent_then_patch, "done", False):
                concurrent_then_patch.done = True
                route["metadata"]["resourceVersion"] = "999"  # another writer got there first
            return original(body)

        backend._patch_route = concurrent_then_patch
        backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
        assert route_weights(fake) == {"churn": 90, "churn-preview": 10}

    def test_without_a_gateway_there_is_no_split(self, cluster):
        from mlops_airflow.serving.base import SplitUnsupportedError

        _, backend = cluster
        with pytest.raises(SplitUnsupportedError):
            backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
        assert backend.traffic_weights() == {}

    def test_the_route_and_the_role_validate(self):
        from gateway_api import validate_httproute

        from mlops_airflow.specs import GatewayRef

        documents = serving_manifests(
            model=MODEL,
            namespace=NAMESPACE,
            image="x",
            tracking_uri="http://mlflow",
            switcher_service_account="w",
            switcher_namespace="airflow",
            gateway=GatewayRef("public", section_name="https"),
        )
        (route,) = [d for d in documents if d["kind"] == "HTTPRoute"]
        validate_httproute(route)
        assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "sectionName": "https"}]
        for doc in documents:
            if doc["kind"] != "HTTPRoute":
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        (role,) = [d for d in documents if d["kind"] == "Role"]
        assert role["rules"] == switch_role_rules(MODEL, gateway=True)
        assert role["rules"][-1] == {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "resourceNames": [MODEL],
            "verbs": ["get", "patch"],
        }

    def test_the_schema_catches_a_bad_route(self):
        """The validation above can fail: a weight past the API's bound and a backend without a name are refused."""
        import jsonschema
        from gateway_api import validate_httproute

        from mlops_airflow.serving.kubernetes_manifests import live_route
        from mlops_airflow.specs import GatewayRef

        route = live_route(MODEL, NAMESPACE, GatewayRef("public"))
        route["spec"]["rules"][0]["backendRefs"][1]["weight"] = 2_000_000
        with pytest.raises(jsonschema.ValidationError, match="2000000"):
            validate_httproute(route)
        route = live_route(MODEL, NAMESPACE, GatewayRef("public"))
        del route["spec"]["rules"][0]["backendRefs"][0]["name"]
        with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
            validate_httproute(route)
        route = live_route(MODEL, NAMESPACE, GatewayRef("public"))
        route["spec"]["rules"][0]["filters"][0]["requestHeaderModifer"] = route["spec"]["rules"][0]["filters"][0].pop("requestHeaderModifier")
        with pytest.raises(jsonschema.ValidationError, match="requestHeaderModifer"):
            validate_httproute(route)
