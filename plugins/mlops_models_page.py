"""Airflow loads this file from the plugins folder: the Models page (mlops_airflow.ui)."""

from mlops_airflow.ui.plugin import MlopsModelsPlugin

__all__ = ["MlopsModelsPlugin"]
