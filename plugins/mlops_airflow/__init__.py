"""mlops-airflow: Airflow 3 DAGs and operators for the life of a production model."""

__version__ = "0.1.0"
