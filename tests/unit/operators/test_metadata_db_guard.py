"""The guard every operator test here runs under can fail: touching Airflow's metadata database is caught."""

from __future__ import annotations

import pytest


def test_a_session_on_the_metadata_database_fails():
    from airflow.utils.session import create_session

    with pytest.raises(AssertionError, match="metadata database"), create_session():
        pass


def test_an_engine_for_the_metadata_database_fails_and_other_databases_work(tmp_path):
    import sqlalchemy
    from airflow.configuration import conf

    with pytest.raises(AssertionError, match="created an engine for Airflow's metadata database"):
        sqlalchemy.create_engine(conf.get("database", "sql_alchemy_conn"))
    with sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}").connect() as connection:  # the MLflow store's kind
        assert connection.execute(sqlalchemy.text("select 1")).scalar() == 1


def test_an_orm_query_through_airflow_models_fails():
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with pytest.raises(AssertionError, match="metadata database"), create_session() as session:
        session.query(DagRun).count()
