"""InvalidSpecOperator: the one task of a refused spec fails at once, with the loader's message, never retried."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException
from helpers import task_context

from mlops_airflow.operators.invalid_spec import InvalidSpecOperator

ERROR = "/specs/broken.yaml: promotion.margin: must be a number, got 'big'"


class TestInvalidSpecOperator:
    def test_execute_fails_with_the_specs_error(self):
        task = InvalidSpecOperator(task_id="spec_is_invalid", error=ERROR)
        with pytest.raises(AirflowFailException) as failed:
            task.execute(task_context())
        assert str(failed.value) == f"the model spec was refused, so this DAG cannot run: {ERROR}"

    @pytest.mark.parametrize(
        ("dag_args", "task_args"),
        [
            pytest.param({}, {}, id="defaults"),
            pytest.param({"default_args": {"retries": 3}}, {}, id="dag-default-args"),
            pytest.param({}, {"retries": 5}, id="asked-for"),
        ],
    )
    def test_never_retried(self, dag_args, task_args):
        """A retry reads the same file: the refusal would only come again after the retry delays."""
        with DAG("retrain_broken", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), **dag_args):
            task = InvalidSpecOperator(task_id="spec_is_invalid", error=ERROR, **task_args)
        assert task.retries == 0

    def test_the_error_is_not_a_template(self):
        """A spec's message may hold braces; it is shown as it is, never rendered."""
        error = "x.yaml: name: '{{ params.model }}' is not a name"
        with DAG("retrain_x", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
            task = InvalidSpecOperator(task_id="spec_is_invalid", error=error)
        task.render_template_fields({"params": {}})
        assert task.error == error
