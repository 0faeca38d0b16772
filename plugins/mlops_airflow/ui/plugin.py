"""The Airflow plugin: the Models app on the API server and its entry in the UI's navigation."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlops_airflow.ui.app import PAGE_PATH, URL_PREFIX, create_app


class MlopsModelsPlugin(AirflowPlugin):
    name = "mlops_models"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "mlops-airflow Models"}]
    external_views = [
        {
            "name": "Models",
            "href": f"{URL_PREFIX}{PAGE_PATH}",
            "destination": "nav",
            "url_route": "mlops-models",
            "category": "browse",
        }
    ]
