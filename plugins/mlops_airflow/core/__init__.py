"""Airflow-free domain logic: contracts, evaluation, promotion, drift windows, the payloads passed between tasks."""
