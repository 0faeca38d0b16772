"""helm/airflow/values.yaml: valid for the official chart, and wired to what the DAGs need."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers import REPO_ROOT

from mlops_airflow.observability.metrics import statsd_mapping
from mlops_airflow.specs import load_specs

VALUES = REPO_ROOT / "helm" / "airflow" / "values.yaml"
NAMESPACE_MANIFEST = REPO_ROOT / "helm" / "airflow" / "mlops-namespace.yaml"
SCHEMA_ENV = "MLOPS_CHART_VALUES_SCHEMA"


def schema_path() -> Path:
    """The official chart's values schema (tests/deploy/reference/README.md says where it is from)."""
    return Path(os.environ.get(SCHEMA_ENV) or Path(__file__).parent / "reference" / "airflow-chart-values.schema.json")


@pytest.fixture(scope="module")
def schema():
    import json

    return json.loads(schema_path().read_text())


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load(VALUES.read_text())


def test_values_validate_against_the_official_charts_schema(schema, values):
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=str)
    assert errors == [], "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        pytest.param(("executor",), "Celery", id="unknown-executor"),
        pytest.param(("images", "airflow", "pullPolicy"), "Sometimes", id="bad-enum"),
        pytest.param(("triggerer", "enabeld"), True, id="typo-in-a-key"),
        pytest.param(("secret", 0, "secretKeyName"), "x", id="unknown-secret-field"),
    ],
)
def test_a_broken_value_is_caught(schema, values, path, bad):
    """The schema check above can fail: each of these mistakes is reported."""
    broken = copy.deepcopy(values)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_statsd_exporter_maps_every_metric_we_send(values):
    assert values["statsd"]["enabled"] is True
    assert values["config"]["metrics"]["statsd_on"] == "True"
    assert values["statsd"]["extraMappings"] == statsd_mapping()["mappings"], "regenerate with: python -m mlops_airflow.observability.metrics mapping"


def test_the_triggerer_runs_and_dags_are_baked_into_the_image(values):
    assert values["triggerer"]["enabled"] is True
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["images"]["airflow"]["repository"]
    assert values["airflowVersion"].startswith("3.3")


def test_connections_come_from_kubernetes_secrets(values):
    """The connections the DAGs use: credentials only through `secret`, never as a literal in `env`."""
    from_secrets = {entry["envName"] for entry in values["secret"]}
    assert {"AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_CONN_AIRFLOW_API"} <= from_secrets
    literal = {entry["name"]: entry["value"] for entry in values["env"]}
    assert not {name for name in literal if name.startswith("AIRFLOW_CONN_") and name != "AIRFLOW_CONN_KUBERNETES_DEFAULT"}
    for value in literal.values():
        assert "password" not in value.lower()


def test_the_promotion_pool_is_created_as_the_specs_and_astro_settings_declare_it(values):
    settings = yaml.safe_load((REPO_ROOT / "airflow_settings.yaml").read_text())
    pools = {pool["pool_name"]: pool["pool_slot"] for pool in settings["airflow"]["pools"]}
    for spec in load_specs(REPO_ROOT / "include" / "models"):
        assert pools.get(spec.promotion.pool) == 1, spec.promotion.pool
    script = values["migrateDatabaseJob"]["args"][-1]
    for name, slots in pools.items():
        assert f"airflow pools set {name} {slots} " in script


def test_worker_identity_matches_the_serving_and_training_rbac(values):
    worker = values["workers"]["serviceAccount"]["name"]
    serving = yaml.safe_load((REPO_ROOT / "helm" / "model-serving" / "values.yaml").read_text())
    assert serving["switcher"]["serviceAccount"] == worker
    docs = list(yaml.safe_load_all(NAMESPACE_MANIFEST.read_text()))
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": worker, "namespace": serving["switcher"]["namespace"]}]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    for spec in load_specs(REPO_ROOT / "include" / "models"):
        assert (spec.training.compute.namespace, spec.training.compute.service_account) == (account["metadata"]["namespace"], account["metadata"]["name"])


def test_the_training_namespace_manifest_validates():
    docs = list(yaml.safe_load_all(NAMESPACE_MANIFEST.read_text()))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33", strict=True)
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert all("*" not in rule["verbs"] + rule["resources"] for rule in role["rules"])
    assert "secrets" not in {r for rule in role["rules"] for r in rule["resources"]}


def test_training_pods_accept_nothing_and_reach_only_dns_mlflow_and_object_storage():
    from urllib.parse import urlsplit

    from mlops_airflow.operators.training_pod import training_pod_kwargs

    (policy,) = [d for d in yaml.safe_load_all(NAMESPACE_MANIFEST.read_text()) if d["kind"] == "NetworkPolicy"]
    kubernetes_validate.validate(policy, "1.33", strict=True)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for spec in load_specs(REPO_ROOT / "include" / "models"):
        assert selector.items() <= training_pod_kwargs(spec)["labels"].items()  # it selects the training pods
        assert policy["metadata"]["namespace"] == spec.training.compute.namespace
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["spec"]["ingress"] == []  # no connection in
    opened = {(port["protocol"], port["port"]) for rule in policy["spec"]["egress"] for port in rule["ports"]}
    tracking = urlsplit(yaml.safe_load((REPO_ROOT / "helm" / "model-serving" / "values.yaml").read_text())["mlflow"]["trackingUri"])
    assert opened == {("UDP", 53), ("TCP", 53), ("TCP", tracking.port), ("TCP", 443)}
    (dns, mlflow, storage) = policy["spec"]["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert "namespaceSelector" not in mlflow["to"][0]  # the MLflow server in the training namespace only
    (block,) = storage["to"]
    assert "169.254.0.0/16" in block["ipBlock"]["except"]  # never the cloud metadata service


def test_the_mlflow_identity_job_validates_takes_secrets_from_kubernetes_and_is_restricted():
    from mlops_airflow.utils.pod_security import restricted_violations

    (job,) = yaml.safe_load_all((REPO_ROOT / "helm" / "airflow" / "mlflow-pipeline-identity.yaml").read_text())
    kubernetes_validate.validate(job, "1.33", strict=True)
    pod = job["spec"]["template"]
    assert restricted_violations(pod) == []
    (container,) = pod["spec"]["containers"]
    assert container["command"][:4] == ["python", "-m", "mlops_airflow.mlflow_auth", "setup"]
    secrets = {entry["name"] for entry in container["env"] if "valueFrom" in entry}
    assert secrets == {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLOPS_MLFLOW_PIPELINE_USER", "MLOPS_MLFLOW_PIPELINE_PASSWORD"}
    assert not any("password" in str(entry.get("value", "")).lower() for entry in container["env"])
