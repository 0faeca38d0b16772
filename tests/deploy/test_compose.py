"""docker-compose.yaml: parses, every service is health-checked, no literal secrets, and the wiring holds.

No Docker engine here: the file is parsed, interpolated with .env.example as Compose would,
and checked service by service.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest
import yaml
from helpers import REPO_ROOT

from mlops_airflow.observability.metrics import statsd_mapping
from mlops_airflow.specs import DockerServingSpec

COMPOSE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
# One-shot services: they exit, and the others wait for `service_completed_successfully`.
NO_HEALTHCHECK = {"airflow-init", "mlflow-init"}
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-init"}
SECRET_WORDS = re.compile(r"password|secret|fernet|token|api_key", re.IGNORECASE)
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}; $$ is a literal $."""

    def replace(match: re.Match) -> str:
        name, kind, argument = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name} is required: {argument}")
        return argument or ""

    return VARIABLE.sub(replace, text).replace("$$", "$")


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env_example()))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def networks(service: dict) -> set[str]:
    return set(service.get("networks") or ["default"])


def test_the_expected_services_are_there(compose):
    assert AIRFLOW_SERVICES | {"postgres", "redis", "mlflow", "statsd-exporter", "prometheus", "grafana", "serving-router"} <= set(compose["services"])


def test_every_service_has_a_healthcheck_or_is_one_shot(compose):
    for name, service in compose["services"].items():
        if name in NO_HEALTHCHECK:
            waiting = [other for other in compose["services"].values() if (other.get("depends_on") or {}).get(name)]
            assert waiting
            assert all(o["depends_on"][name]["condition"] == "service_completed_successfully" for o in waiting)
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_every_variable_is_documented_in_env_example(raw):
    documented = env_example()
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text())}
    required = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text()) if m.group(2) == "?"}
    assert required <= set(documented), required - set(documented)
    assert used - {"MLOPS_AIRFLOW_IMAGE"} <= set(documented)
    for key, value in documented.items():
        if SECRET_WORDS.search(key) or key.endswith("_KEY"):
            assert value == "change-me", f".env.example must not carry a usable secret for {key}"


def test_no_secret_is_a_literal(raw):
    """Every value that carries a secret comes from an interpolated variable."""

    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{path}[{index}]")
        elif isinstance(node, str):
            yield path, node

    def is_reference(text: str) -> bool:
        """${VAR} (Compose fills it in from .env) or $${VAR} (the container's shell reads its environment)."""
        return VARIABLE.fullmatch(text.strip()) is not None or re.fullmatch(r"\$\$\{[A-Z0-9_]+\}", text.strip()) is not None

    problems = []
    for path, value in walk(raw):
        key = path.rsplit(".", 1)[-1]
        if SECRET_WORDS.search(key) and not key.endswith("_FILE") and not is_reference(value):
            problems.append(path)
        for found in re.finditer(r'"password":\s*"([^"]*)"', value):
            if not is_reference(found.group(1)):
                problems.append(path)
        for found in re.finditer(r"://[^:/@\s]+:([^@\s]+)@", value):
            if not is_reference(found.group(1)):
                problems.append(path)
    assert problems == [], problems


def test_airflow_services_share_one_image_and_the_same_airflow_settings(compose):
    services = {name: compose["services"][name] for name in AIRFLOW_SERVICES}
    assert len({s["image"] for s in services.values()}) == 1
    settings = {name: {k: v for k, v in environment(s).items() if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))} for name, s in services.items()}
    first = settings["airflow-scheduler"]
    for name, values in settings.items():
        assert values == first, f"{name} differs from the scheduler"
    assert first["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_services_reach_each_other_by_name(compose):
    services = compose["services"]
    env = environment(services["airflow-worker"])

    def reachable(host: str, source: str) -> None:
        assert host in services, f"{host} is not a service"
        assert networks(services[host]) & networks(services[source]), f"{source} and {host} share no network"

    reachable(urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname, "airflow-worker")
    reachable(urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname, "airflow-worker")
    reachable(urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname, "airflow-worker")
    reachable(env["AIRFLOW__METRICS__STATSD_HOST"], "airflow-worker")
    for conn in ("AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_CONN_AIRFLOW_API"):
        connection = json.loads(env[conn])  # valid JSON once interpolated
        reachable(urlparse(connection["host"]).hostname, "airflow-worker")
    script = services["mlflow"]["command"][-1]
    mlflow_store = re.search(r'--backend-store-uri "([^"]+)"', script).group(1)
    auth_store = re.search(r"database_uri = (\S+)", script).group(1)
    for store, database in ((mlflow_store, "mlflow"), (auth_store, "mlflow_auth")):
        reachable(urlparse(store).hostname, "mlflow")
        assert urlparse(store).path == f"/{database}"
        assert f"CREATE DATABASE {database} OWNER airflow;" in (REPO_ROOT / "deploy/compose/postgres-init.sql").read_text()
    reachable(urlparse(services["mlflow-init"]["entrypoint"][-1]).hostname, "mlflow-init")


def test_mlflow_runs_with_basic_auth_and_the_pipeline_has_its_own_identity(compose):
    services = compose["services"]
    script = services["mlflow"]["command"][-1]
    assert "mlflow server --app-name basic-auth" in script
    assert "default_permission = READ" in script
    env = environment(services["mlflow"])
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/tmp/basic_auth.ini"
    assert services["mlflow-init"]["entrypoint"][:4] == ["python", "-m", "mlops_airflow.mlflow_auth", "setup"]
    init_env = environment(services["mlflow-init"])
    connection = json.loads(environment(services["airflow-worker"])["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    assert connection["login"] == init_env["MLOPS_MLFLOW_PIPELINE_USER"] != "admin"
    assert connection["password"] == init_env["MLOPS_MLFLOW_PIPELINE_PASSWORD"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["mlflow-init"]["condition"] == "service_completed_successfully"


def test_the_docker_serving_backend_finds_its_router_and_network(compose):
    """The spec's serving.docker defaults are this compose stack's names."""
    defaults = DockerServingSpec()
    services = compose["services"]
    assert compose["networks"]["serving"]["name"] == defaults.network
    for name in ("airflow-worker", "serving-router", "mlflow"):
        assert "serving" in networks(services[name]), name
    router = json.loads((REPO_ROOT / "deploy/compose/serving-router.json").read_text())
    assert router["apps"]["http"]["servers"] == {}
    assert f"{defaults.live_port}:{defaults.live_port}" in services["serving-router"]["ports"]
    worker_env = environment(services["airflow-worker"])
    assert worker_env["MLOPS_SERVING_BACKEND"] == "docker"
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["airflow-worker"]["volumes"]
    assert defaults.image == compose["x-airflow-common"]["image"]


def test_the_routers_admin_api_is_a_socket_only_the_router_and_the_workers_reach(compose):
    """Whoever reaches the admin API re-routes live traffic: not the scoring containers on the serving network, not the host."""
    defaults = DockerServingSpec()
    router = json.loads((REPO_ROOT / "deploy/compose/serving-router.json").read_text())
    socket_path = defaults.router_admin_url.removeprefix("unix:")
    assert defaults.router_admin_url.startswith("unix:/")
    listen, _, mode = router["admin"]["listen"].partition("|")
    assert (listen, mode) == (f"unix/{socket_path}", "0660")
    folder = socket_path.rsplit("/", 1)[0]
    mounting = sorted(name for name, service in compose["services"].items() if any(str(v).split(":")[1:2] == [folder] for v in service.get("volumes", [])))
    assert mounting == ["airflow-worker", "serving-router"]
    assert "serving-router-admin" in compose["volumes"]
    assert not any(":" in str(p) and str(p).rsplit(":", 1)[-1] == "2019" for p in compose["services"]["serving-router"].get("ports", []))


def test_statsd_exporter_prometheus_and_grafana_are_wired(compose):
    services = compose["services"]
    mapping_file = REPO_ROOT / "deploy/compose/statsd-mapping.yml"
    assert yaml.safe_load(mapping_file.read_text()) == statsd_mapping(), "regenerate: python -m mlops_airflow.observability.metrics mapping"
    exporter = services["statsd-exporter"]
    assert "./deploy/compose/statsd-mapping.yml:/etc/statsd/mapping.yml:ro" in exporter["volumes"]
    assert "--statsd.mapping-config=/etc/statsd/mapping.yml" in exporter["command"]
    assert environment(services["airflow-worker"])["AIRFLOW__METRICS__STATSD_PORT"] == "9125"
    assert "--statsd.listen-udp=:9125" in exporter["command"]
    scrape = yaml.safe_load((REPO_ROOT / "deploy/compose/prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["statsd-exporter:9102"]
    assert "--web.listen-address=:9102" in exporter["command"]
    datasource = yaml.safe_load((REPO_ROOT / "deploy/compose/grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    assert urlparse(datasource["url"]).hostname == "prometheus"
    provider = yaml.safe_load((REPO_ROOT / "deploy/compose/grafana/provisioning/dashboards/mlops.yaml").read_text())["providers"][0]
    assert f"./deploy/compose/grafana/dashboards:{provider['options']['path']}:ro" in services["grafana"]["volumes"]


def test_every_mounted_file_is_in_the_repository(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts {source}, which is missing"
