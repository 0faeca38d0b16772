"""The app's routes with Airflow's user dependency stood in for: what each answers, its headers, links under a base path."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlops_airflow.ui import app as models_app
from mlops_airflow.ui.overview import ModelOverview


@pytest.fixture
def client(monkeypatch):
    app = models_app.create_app()
    app.dependency_overrides[models_app.current_user] = lambda: "alice"
    monkeypatch.setattr(models_app, "model_overviews", lambda user: ([ModelOverview(name="churn")], ["bad.yaml: name: is required"]))
    root = FastAPI()
    root.mount("/airflow/mlops", app)
    return TestClient(root)


def test_the_page_and_the_json_carry_the_same_models_and_the_security_headers(client):
    page = client.get("/airflow/mlops/models")
    assert page.status_code == 200
    assert "<h2>churn</h2>" in page.text
    assert "bad.yaml: name: is required" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"
    body = client.get("/airflow/mlops/api/models").json()
    assert [m["name"] for m in body["models"]] == ["churn"]
    assert body["spec_errors"] == ["bad.yaml: name: is required"]


def test_airflows_root_is_the_mount_path_less_the_prefix():
    class Request:
        def __init__(self, root_path):
            self.scope = {"root_path": root_path}

    assert models_app.airflow_root(Request("/airflow/mlops")) == "/airflow"
    assert models_app.airflow_root(Request("/mlops")) == ""
