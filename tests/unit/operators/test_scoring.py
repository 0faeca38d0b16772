"""Batch scoring serves the champion only when its promotion is on record."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import DATA_END, REPO_ROOT, ROWS_PER_DAY, mark_promoted, task_context

SPEC = str(REPO_ROOT / "include" / "models" / "churn.yaml")
DAY = DATA_END - dt.timedelta(days=1)


@pytest.fixture
def champion(mlflow_store, churn_spec, churn_data):
    """churn v1: a small pipeline logged as training logs it (skops, the package's trusted types), set as champion by hand."""
    import mlflow
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient

    from mlops_airflow.core.estimators import TRUSTED_TYPES, build_pipeline
    from mlops_airflow.core.features import prepare_features
    from mlops_airflow.core.partitions import read_window

    kind = churn_spec.training.estimator.kind
    frame = read_window(churn_spec.data.uri, DAY - dt.timedelta(days=3), DAY).frame
    features = prepare_features(frame, churn_spec)
    pipeline = build_pipeline(kind, {"max_iter": 5}, numeric=churn_spec.features.numeric, categorical=churn_spec.features.categorical, seed=1)
    pipeline.fit(features, frame[churn_spec.target.column].astype(int))
    mlflow.set_tracking_uri(mlflow_store)
    try:
        with mlflow.start_run():
            mlflow.log_param("estimator", kind)
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=list(TRUSTED_TYPES[kind]),
                pip_requirements=["scikit-learn"],
            )
        version = str(mlflow.register_model(info.model_uri, "churn", await_registration_for=0).version)
    finally:
        mlflow.set_tracking_uri(None)
    client = MlflowClient(mlflow_store, mlflow_store)
    client.set_registered_model_alias("churn", "champion", version)
    return client, version


def score():
    from mlops_airflow.operators.scoring import BatchScoreOperator

    return BatchScoreOperator(task_id="score_partition", spec_path=SPEC, partition_date=str(DAY)).execute(task_context())


class TestBatchScoreOperator:
    def test_a_champion_set_by_hand_scores_nothing(self, champion, churn_spec):
        from pathlib import Path

        from mlops_airflow.exceptions import UnservableVersionError

        _, version = champion
        with pytest.raises(UnservableVersionError, match=f"refusing to batch score with churn v{version}: it has no promotion decision on record"):
            score()
        assert not Path(churn_spec.data.predictions_uri.removeprefix("file://"), f"dt={DAY}").exists()

    def test_a_promoted_champion_scores_the_day(self, champion):
        client, version = champion
        mark_promoted(client, "churn", version)
        result = score()
        assert (result["rows"], result["model_version"]) == (ROWS_PER_DAY, version)
