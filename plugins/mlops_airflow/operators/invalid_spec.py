"""The one task of a model whose spec was refused: it fails at once, saying why.

Where it sits: the DAG files load every spec on its own (:func:`~mlops_airflow.specs.load_spec_folder`).
Airflow records an import error per *file* and marks every DAG of that file stale, so raising
would take every model's DAGs down with one bad spec. A refused spec instead gets DAGs of its
own that carry the error (description, docs, tag ``invalid-spec``) and whose only task fails
without a retry, naming the file and the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context


class InvalidSpecOperator(BaseOperator):
    """
    Fail with the spec's error; never retried.

    :param error: the loader's message: ``<file>: <field>: <problem>``.
    """

    ui_color = "#f4a6a6"

    def __init__(self, *, error: str, **kwargs: Any) -> None:
        kwargs["retries"] = 0
        super().__init__(**kwargs)
        self.error = error

    def execute(self, context: Context) -> None:
        raise AirflowFailException(f"the model spec was refused, so this DAG cannot run: {self.error}")
