"""A templated field that cannot be rendered fails the task at once (no retry), naming the field."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException
from helpers import CHURN_SPEC

from mlops_airflow.operators.data_checks import DataContractCheckOperator
from mlops_airflow.utils.templates import FailFastTemplates


def check_task(**templates: str) -> DataContractCheckOperator:
    with DAG("templates", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
        return DataContractCheckOperator(task_id="check_training_data", spec_path=str(CHURN_SPEC), **templates)


def test_an_undefined_context_key_fails_without_retry_and_names_the_field():
    """What a run without a logical date met: its context has no data_interval_end at all."""
    task = check_task(interval_start="2026-03-01", interval_end="{{ data_interval_end | ds }}")
    with pytest.raises(
        AirflowFailException,
        match=r"check_training_data: the templated field 'interval_end' cannot be rendered \(UndefinedError: 'data_interval_end' is undefined\)",
    ):
        task.render_template_fields({"params": {}})


def test_template_syntax_errors_fail_the_same_way():
    task = check_task(interval_start="{{ params.window_end ", interval_end="2026-03-02")
    with pytest.raises(AirflowFailException, match=r"'interval_start' cannot be rendered \(TemplateSyntaxError"):
        task.render_template_fields({"params": {}})


def test_fields_that_render_are_rendered_as_before():
    task = check_task(interval_start="{{ params.day }}", interval_end="2026-03-02")
    task.render_template_fields({"params": {"day": "2026-03-01"}})
    assert (task.interval_start, task.interval_end) == ("2026-03-01", "2026-03-02")


def test_every_operator_and_sensor_of_the_package_fails_fast():
    import importlib
    import inspect
    import pkgutil

    from airflow.sdk import BaseOperator

    import mlops_airflow.operators
    import mlops_airflow.sensors

    without = []
    for package in (mlops_airflow.operators, mlops_airflow.sensors):
        for module_info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{module_info.name}")
            for name, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == module.__name__ and issubclass(cls, BaseOperator) and cls.template_fields and not issubclass(cls, FailFastTemplates):
                    without.append(f"{module.__name__}.{name}")
    assert without == []
