"""Batch scoring: predict one day's partition with the champion and write it idempotently.

Where it sits in the loop: the champion serves batch predictions; drift backfills re-run it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.constants import CHAMPION_ALIAS, DEFAULT_MLFLOW_CONN_ID
from mlops_airflow.utils.task_args import as_date, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

PREDICTIONS_FILE = "predictions.parquet"


class BatchScoreOperator(FailFastTemplates, BaseOperator):
    """
    Score the partition of ``partition_date`` with ``models:/<model>@champion``.

    The output ``<predictions_uri>/dt=YYYY-MM-DD/predictions.parquet`` carries the input's
    non-feature columns (ids, timestamps), the predicted class, one probability per class and
    the model version. It is written atomically and replaced whole on a re-run, so a
    backfill re-scores a day without leaving two answers behind. With no champion yet there
    is nothing to score and the task is skipped. A champion without a promotion on record (an
    alias moved by hand) or in any format but skops with the package's trusted types is refused
    before anything of it runs.

    :param spec_path: path of the model spec YAML.
    :param partition_date: the day to score (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("partition_date",)

    def __init__(self, *, spec_path: str, partition_date: str, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.partition_date = partition_date
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa

        from mlops_airflow.core.features import FeatureError, prepare_features
        from mlops_airflow.core.partitions import read_window, write_partition
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.hooks.model_versions import require_promoted

        spec = load_task_spec(self.spec_path)
        day = as_date(self.partition_date, "partition_date")
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        champion = hook.get_version_by_alias(spec.registered_model_name, CHAMPION_ALIAS)
        if champion is None:
            raise AirflowSkipException(f"{spec.registered_model_name} has no {CHAMPION_ALIAS!r} version yet: nothing to score with")
        require_promoted(spec.registered_model_name, champion, action="batch score with", secret=hook.get_lock_secret())

        window = read_window(spec.data.uri, day, day + dt.timedelta(days=1))
        if window.frame.empty:
            raise AirflowFailException(f"partition {day} under {spec.data.uri} is missing or empty")
        try:
            features = prepare_features(window.frame, spec)
        except FeatureError as err:
            raise AirflowFailException(f"partition {day}: {err}") from err

        model_uri = f"models:/{spec.registered_model_name}/{champion.version}"
        kind = hook.estimator_kind(champion.run_id, spec.training.estimator.kind)
        model = hook.load_model(spec.registered_model_name, champion.version, estimator_kind=kind)
        probabilities = np.asarray(model.predict(features))
        classes = list(spec.target.classes)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
            raise AirflowFailException(f"{model_uri} returned shape {probabilities.shape}; expected one probability per class {classes}")

        passthrough = [c for c in window.frame.columns if c not in (*spec.features.columns, spec.target.column, "dt")]
        output = window.frame[passthrough].reset_index(drop=True)
        output["prediction"] = np.asarray(classes)[probabilities.argmax(axis=1)]
        for index, label in enumerate(classes):
            output[f"probability_{label}"] = probabilities[:, index]
        output["model_version"] = str(champion.version)
        uri = write_partition(pa.Table.from_pandas(output, preserve_index=False), spec.data.predictions_uri, day, PREDICTIONS_FILE)
        self.log.info("Scored %d rows of %s with %s v%s into %s", len(output), day, spec.registered_model_name, champion.version, uri)
        from mlops_airflow.assets import describe_outlet, predictions_asset

        describe_outlet(
            context, predictions_asset(spec), {"day": day.isoformat(), "rows": len(output), "model_version": str(champion.version)}, partition=day.isoformat()
        )
        return {"uri": uri, "rows": len(output), "model_version": str(champion.version), "partition_date": day.isoformat()}
