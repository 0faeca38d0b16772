"""EvaluateChallengerOperator: the evidence for a promotion.

Where it sits in the loop: train -> **evaluate** -> (approve) -> promote -> deploy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.constants import DEFAULT_MLFLOW_CONN_ID
from mlops_airflow.hooks.model_versions import evaluate_registered_versions
from mlops_airflow.observability.metrics import PROMOTION_PRIMARY_METRIC, gauge
from mlops_airflow.utils.task_args import as_date, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context


class EvaluateChallengerOperator(FailFastTemplates, BaseOperator):
    """
    Score ``challenger`` and ``champion`` on the same fresh rows and judge the spec's gates.

    The evaluation window is the newest ``promotion.evaluation_days`` days before
    ``window_end``: labelled, and held out from fitting. Both versions are loaded through
    the registry, scored on identical rows, compared overall, per segment and by a paired
    bootstrap of the primary metric. The report (XCom) carries the decision; the operator
    never moves an alias. An evaluation that cannot be computed (a NaN or missing metric,
    a model whose signature does not match the data) fails closed, without retries.

    :param spec_path: the model spec (templated).
    :param window_end: the training window's end, exclusive (templated).
    :param challenger_version: the version training registered; a different ``challenger``
        alias fails the task (templated, optional).
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("spec_path", "window_end", "challenger_version")

    def __init__(
        self,
        *,
        spec_path: str,
        window_end: str | dt.date,
        challenger_version: str | None = None,
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.window_end = window_end
        self.challenger_version = challenger_version
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.evaluation import summary_table
        from mlops_airflow.hooks.mlflow import MlflowHook

        spec = load_task_spec(self.spec_path)
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        report = evaluate_registered_versions(hook, spec, as_date(self.window_end, "window_end"), expected_challenger=self.challenger_version or None)
        self.log.info("Evaluation of %s:\n%s", spec.name, summary_table(report))
        primary = spec.promotion.primary_metric
        for role in ("challenger", "champion"):
            scored = getattr(report, role)
            if scored is not None:
                gauge(PROMOTION_PRIMARY_METRIC, scored.metrics[primary], model=spec.name, role=role, metric=primary)
        return report.to_xcom()
