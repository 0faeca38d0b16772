"""The Models page inside Airflow's own API app: mounted from the plugins folder, Airflow's auth enforced, real data.

The app is Airflow's (``create_app``), with the plugins folder of this checkout, the simple auth
manager, a migrated metadata database and a real MLflow store. Tokens are the ones Airflow issues.
"""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from helpers import churn_spec_raw, free_port, register_champion_with_reference, write_spec

from mlops_airflow.constants import TAG_DECISION, TAG_DECISION_DAG_RUN
from mlops_airflow.core.promotion import decision_artifact
from mlops_airflow.hooks.mlflow import MlflowHook

PAGE = "/mlops/models"
API = "/mlops/api/models"


@pytest.fixture
def models(tmp_path, monkeypatch, mlflow_store):
    """Specs churn and upsell, a spec that does not load; churn has a promoted champion, a drift history and a run."""
    specs = tmp_path / "models"
    specs.mkdir()
    raw = churn_spec_raw()
    write_spec(raw, specs)
    raw["name"] = "upsell"
    raw["serving"]["local"] = {"live_port": free_port(), "blue_port": free_port(), "green_port": free_port()}
    write_spec(raw, specs, "upsell.yaml")
    (specs / "broken.yaml").write_text(yaml.safe_dump({"name": "broken<script>"}))
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(specs))
    monkeypatch.setenv("MLOPS_SERVING_STATE_DIR", str(tmp_path / "serving"))

    from mlflow.tracking import MlflowClient

    version = register_champion_with_reference(mlflow_store)
    client = MlflowClient(mlflow_store)
    run_id = client.get_model_version("churn", version).run_id
    client.set_model_version_tag("churn", version, TAG_DECISION, "promoted")
    client.set_model_version_tag("churn", version, TAG_DECISION_DAG_RUN, "manual__first")
    client.log_dict(run_id, {"evaluation": {"gates": [{"name": "roc_auc_min", "passed": True, "detail": "0.81 >= 0.70"}]}}, decision_artifact("manual__first"))
    MlflowHook(tracking_uri=mlflow_store).log_day_metrics(run_id, [("drift.tenure.p_value", 0.002, dt.date(2026, 11, 30))])
    return version


@pytest.fixture(scope="module")
def airflow_app(airflow_db):
    """Airflow's API app, built once: the page reads the specs' folder and the stores on each request."""
    from airflow.api_fastapi.app import create_app

    return create_app("core")


@pytest.fixture
def app(airflow_app, models):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from fastapi.testclient import TestClient

    with create_session() as session:
        for dag_id in ("retrain_churn", "retrain_upsell"):
            session.query(DagRun).filter(DagRun.dag_id == dag_id).delete()
            session.add(
                DagRun(dag_id=dag_id, run_id=f"manual__{dag_id}", run_type=DagRunType.MANUAL, state=DagRunState.SUCCESS, run_after=dt.datetime.now(dt.UTC))
            )
    return TestClient(airflow_app)  # a client of its own: no cookie of another test


def token(role: str | None, *, name: str = "alice", seconds: int = 600) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role=role), expiration_time_in_seconds=seconds)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


class TestAuth:
    @pytest.mark.parametrize("path", [PAGE, API])
    def test_no_token_is_401(self, app, path):
        response = app.get(path)
        assert (response.status_code, response.json()["detail"]) == (401, "Not authenticated")

    def test_an_expired_token_is_401(self, app):
        expired = token("ADMIN", seconds=-60)  # past Airflow's leeway for clock skew
        assert app.get(PAGE, headers=bearer(expired)).status_code == 401

    def test_a_token_that_does_not_verify_is_403(self, app):
        forged = token("ADMIN")[:-4] + "AAAA"
        assert app.get(PAGE, headers=bearer(forged)).status_code == 403
        assert app.get(PAGE, headers=bearer("not-a-jwt")).status_code == 403

    @pytest.mark.parametrize("path", [PAGE, API])
    def test_a_user_the_auth_manager_gives_no_dag_access_is_403(self, app, path):
        response = app.get(path, headers=bearer(token(None, name="nobody")))
        assert response.status_code == 403
        assert "reading DAG runs is not allowed" in response.json()["detail"]

    def test_a_viewer_reads_the_page_with_the_ui_session_cookie(self, app):
        """The UI frames the page; the browser sends Airflow's session cookie, not a header."""
        app.cookies.set("_token", token("VIEWER"))
        response = app.get(PAGE)
        assert response.status_code == 200
        assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
        assert "<h2>churn</h2>" in response.text

    def test_models_whose_dags_the_user_may_not_read_are_left_out(self, app, monkeypatch):
        from airflow.api_fastapi.app import get_auth_manager

        manager = get_auth_manager()
        allowed = manager.is_authorized_dag

        def only_churn(*, method, user, access_entity=None, details=None):
            if details is not None and details.id and not details.id.endswith("_churn"):
                return False
            return allowed(method=method, user=user, access_entity=access_entity, details=details)

        monkeypatch.setattr(manager, "is_authorized_dag", only_churn)
        # a run of the hidden model's DAG that the page must not show
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            assert session.query(DagRun).filter(DagRun.dag_id == "retrain_upsell").count() == 1
        body = app.get(API, headers=bearer(token("VIEWER"))).json()
        assert [m["name"] for m in body["models"]] == ["churn"]
        shown = {r["dag_id"] for r in body["models"][0]["runs"]}  # other tests of this worker's database ran churn's DAGs too
        assert "retrain_churn" in shown
        assert all(dag_id.endswith("_churn") for dag_id in shown)


def test_the_page_shows_registry_serving_drift_runs_and_the_bad_spec(app, models):
    response = app.get(PAGE, headers=bearer(token("ADMIN")))
    assert response.status_code == 200, response.text
    html = response.text
    assert "<h1>Models (2)</h1>" in html
    assert f"champion: v{models}" in html
    assert "roc_auc_min" in html
    assert "nothing live" in html  # no colour was ever deployed in this test's serving state
    assert "<title>tenure</title>" in html  # the drift history's line
    assert "manual__retrain_churn" in html
    assert "manual__retrain_upsell" in html
    assert "broken.yaml" in html
    assert "broken<script>" not in html

    body = app.get(API, headers=bearer(token("ADMIN"))).json()
    churn, upsell = body["models"]
    assert churn["versions"][0]["gates"] == [{"name": "roc_auc_min", "passed": True, "detail": "0.81 >= 0.70"}]
    assert churn["drift"][0]["p_value"] == [{"day": "2026-11-30", "value": 0.002}]
    assert (upsell["versions"], upsell["errors"]) == ([], {})
    assert len(body["spec_errors"]) == 1


def test_airflow_lists_the_page_in_its_navigation(app):
    response = app.get("/api/v2/plugins", headers=bearer(token("ADMIN")))
    plugin = next(p for p in response.json()["plugins"] if p["name"] == "mlops_models")
    [view] = plugin["external_views"]
    assert (view["href"], view["destination"], view["url_route"]) == (PAGE, "nav", "mlops-models")
