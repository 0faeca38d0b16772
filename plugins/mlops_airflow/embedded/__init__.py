"""The embedded default: Airflow standalone + an MLflow server on this machine, for ``make demo``.

Nothing here is imported by DAG files.
"""
