-- MLflow's tracking and registry store, beside Airflow's metadata database.
CREATE DATABASE mlflow OWNER airflow;
