-- MLflow's tracking and registry store, and its basic-auth users, beside Airflow's metadata database.
CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE mlflow_auth OWNER airflow;
