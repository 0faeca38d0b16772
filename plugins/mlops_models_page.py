"""Airflow loads this file from the plugins folder: the Models page (mlops_airflow.ui).

Every Airflow process imports the files of the plugins folder, each task's process included,
where the Task SDK looks for macros and listeners only. The page is defined where Airflow's own
plugins manager is the one loading (the API server, the scheduler, the DAG processor): a task
does not pay for importing FastAPI and the page's code.
"""

import sys

if "airflow.plugins_manager" in sys.modules:
    from mlops_airflow.ui.plugin import MlopsModelsPlugin

    __all__ = ["MlopsModelsPlugin"]
