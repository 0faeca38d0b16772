"""The plugin as Airflow's API server and UI read it; the plugins folder's file defines it only where Airflow's plugins manager loads."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO_ROOT

from mlops_airflow.ui.plugin import MlopsModelsPlugin


def test_the_app_is_mounted_under_its_prefix_and_the_view_in_the_navigation():
    [app] = MlopsModelsPlugin.fastapi_apps
    assert app["url_prefix"] == "/mlops"
    assert {route.path for route in app["app"].routes} >= {"/models", "/api/models"}
    [view] = MlopsModelsPlugin.external_views
    assert (view["href"], view["destination"], view["url_route"]) == ("/mlops/models", "nav", "mlops-models")


def test_a_task_process_does_not_import_the_page():
    """The Task SDK imports every file of the plugins folder in each task's process."""
    probe = (
        "import sys, runpy; sys.path.insert(0, 'plugins');"
        "import airflow.sdk.plugins_manager;"
        "module = runpy.run_path('plugins/mlops_models_page.py');"
        "print('PROBE', 'MlopsModelsPlugin' in module, 'fastapi' in sys.modules, 'mlops_airflow.ui.app' in sys.modules)"
    )

    def run(code: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
        return next(line.split()[1:] for line in out.splitlines() if line.startswith("PROBE "))

    assert run(probe) == ["False", "False", "False"]
    assert run(probe.replace("import airflow.sdk.plugins_manager;", "import airflow.plugins_manager;")) == ["True", "True", "True"]
