"""The Models page: a plugin of Airflow's API server that shows each model's registry, serving and drift state."""
