"""The Models page's FastAPI app, mounted by Airflow's API server under ``/mlops``.

``GET /mlops/models`` is the page (HTML, no JavaScript); ``GET /mlops/api/models`` is the same
data as JSON for scripts. Both need Airflow's auth (:mod:`mlops_airflow.ui.access`). The data is
read on each request: the page shows the registry and serving as they are now.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

URL_PREFIX = "/mlops"
PAGE_PATH = "/models"

# The page embeds nothing from elsewhere and runs no script; Airflow's UI may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


_bearer = HTTPBearer(auto_error=False)


async def current_user(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Any:
    """Airflow's user of this request (its API's own dependency, imported when first needed)."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


CurrentUser = Annotated[Any, Depends(current_user)]


def model_overviews(user: Any) -> tuple[list[Any], list[str]]:
    """The overviews of the models ``user`` may read, and the spec files that did not load."""
    from mlops_airflow import settings
    from mlops_airflow.specs.loading import load_spec_folder
    from mlops_airflow.ui.access import model_is_readable, readable_dag_ids, require_dag_reader
    from mlops_airflow.ui.overview import gather_overview, model_dag_ids

    auth_manager = require_dag_reader(user)
    folder = load_spec_folder(settings.specs_dir())
    sources = live_sources()
    overviews = [
        gather_overview(spec, sources, readable_dag_ids=readable_dag_ids(auth_manager, user, model_dag_ids(spec.name)))
        for spec in folder.specs
        if model_is_readable(auth_manager, user, spec.name)
    ]
    return overviews, [str(error) for error in folder.errors]


def live_sources():
    """The registry through the page's MLflow connection (:func:`~mlops_airflow.settings.models_page_mlflow_conn_id`), each spec's serving backend, Airflow's metadata database."""
    from mlops_airflow import settings
    from mlops_airflow.constants import DEFAULT_MLFLOW_CONN_ID
    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.ui.overview import Sources

    # The API server serves Airflow too: a slow or absent MLflow costs a page seconds, not minutes of retries.
    for name, value in settings.MODELS_PAGE_MLFLOW_HTTP.items():
        os.environ.setdefault(name, value)
    hook = MlflowHook(mlflow_conn_id=settings.models_page_mlflow_conn_id() or DEFAULT_MLFLOW_CONN_ID)

    def serving_status(spec):
        from mlops_airflow.serving.factory import serving_backend

        backend = serving_backend(spec, mlflow_env={})  # reading the status needs no registry credentials
        return spec.serving.backend, backend.status(), backend.live_url()

    def mlflow_ui():
        try:
            return settings.mlflow_ui_url(hook.get_tracking_uri())
        except Exception:  # no connection: the page says so in the registry part
            return None

    return Sources(mlflow_hook=hook, serving_status=serving_status, recent_runs=recent_runs, mlflow_ui=mlflow_ui())


def recent_runs(dag_ids: Sequence[str]) -> list[Any]:
    """The newest runs of ``dag_ids`` from Airflow's metadata database (the API server has it)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from mlops_airflow.ui.overview import RECENT_RUNS, RunRow

    def iso(value) -> str | None:
        return value.isoformat(timespec="seconds") if value is not None else None

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id.in_(list(dag_ids))).order_by(DagRun.run_after.desc()).limit(RECENT_RUNS)).all()
        return [RunRow(r.dag_id, r.run_id, str(r.run_type), str(r.state), iso(r.start_date), iso(r.end_date)) for r in runs]


def airflow_root(request: Request) -> str:
    """The path Airflow's UI is served under: the app's mount path less our prefix."""
    root = request.scope.get("root_path", "")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root


def create_app() -> FastAPI:
    app = FastAPI(title="mlops-airflow Models", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(PAGE_PATH, response_class=HTMLResponse)
    def models_page(request: Request, user: CurrentUser) -> HTMLResponse:
        from mlops_airflow.ui.page import render_page

        overviews, errors = model_overviews(user)
        return HTMLResponse(render_page(overviews, errors, airflow_root=airflow_root(request)), headers=SECURITY_HEADERS)

    @app.get("/api/models")
    def models_json(user: CurrentUser) -> JSONResponse:
        overviews, errors = model_overviews(user)
        return JSONResponse({"models": [o.as_dict() for o in overviews], "spec_errors": errors}, headers=SECURITY_HEADERS)

    return app
