"""A champion's live life for the performance monitor: its validation scores, daily predictions and late labels.

The champion's "model" is the synthetic generator's own undrifted label relationship (a
logistic score of the features), so its scores are calibrated on undrifted days by
construction and its ranking decays exactly when the generator's concept drift says so.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from helpers import DATA_END

RUN_DAY = DATA_END - dt.timedelta(days=1)
LABEL_DELAY_DAYS = 3
WINDOW_DAYS = 5
# The labelled window of RUN_DAY: [LABELLED_START, LABELLED_END).
LABELLED_END = RUN_DAY + dt.timedelta(days=1 - LABEL_DELAY_DAYS)
LABELLED_START = LABELLED_END - dt.timedelta(days=WINDOW_DAYS)


def champion_scores(frame):
    """P(churned) under the generator's undrifted relationship."""
    import numpy as np

    logit = (
        -1.6
        + 1.3 * (frame["contract"] == "month-to-month")
        - 0.6 * (frame["contract"] == "two-year")
        - 0.035 * frame["tenure_months"]
        + 0.45 * frame["support_calls"]
        + 0.012 * (frame["monthly_charges"] - 65.0)
        + 0.03 * frame["days_since_last_login"].fillna(5.0)
        + 0.3 * (frame["payment_method"] == "electronic_check")
    )
    return 1.0 / (1.0 + np.exp(-logit.to_numpy(dtype="float64")))


def write_performance_spec(folder, data_root, **performance) -> str:
    """The churn spec reading ``data_root``, with a performance section (overrides in ``performance``); its path."""
    from helpers import churn_spec_raw, write_spec

    raw = churn_spec_raw()
    raw["data"].update(uri=f"{data_root}/events", predictions_uri=f"{data_root}/predictions")
    raw["performance"] = {
        "labels_uri": f"{data_root}/labels",
        "key": "customer_id",
        "label_delay_days": LABEL_DELAY_DAYS,
        "window_days": WINDOW_DAYS,
        "min_labelled_rows": 500,
        "bootstrap_resamples": 300,
        **performance,
    }
    return str(write_spec(raw, folder))


def write_live_days(data_root, version: str, *, concept: float = 0.0, rows_per_day: int = 800, days: int = 10) -> None:
    """``days`` days ending at RUN_DAY: events, the champion's predictions (as batch_score writes them), and labels
    for the days before LABELLED_END only. With ``concept``, the label relationship changes on every one of them."""
    import numpy as np
    import pyarrow as pa

    from mlops_airflow.core.partitions import write_partition
    from mlops_airflow.embedded.synthetic import DriftSettings, generate_day

    first = RUN_DAY - dt.timedelta(days=days - 1)
    drift = DriftSettings(start=first, features=(), magnitude=0.0, change_label_relationship=False, concept=concept) if concept else None
    for offset in range(days):
        day = first + dt.timedelta(days=offset)
        frame = generate_day(day, rows=rows_per_day, seed=11, drift=drift)
        write_partition(pa.Table.from_pandas(frame, preserve_index=False), f"{data_root}/events", day)
        scores = champion_scores(frame)
        predictions = frame[["customer_id", "event_ts"]].assign(
            prediction=(scores >= 0.5).astype("int64"), probability_0=1.0 - scores, probability_1=scores, model_version=version
        )
        write_partition(pa.Table.from_pandas(predictions, preserve_index=False), f"{data_root}/predictions", day, "predictions.parquet")
        if day < LABELLED_END:
            labels = frame[["customer_id", "churned"]].sample(frac=1.0, random_state=offset)  # arrives in any order
            write_partition(pa.Table.from_pandas(labels, preserve_index=False), f"{data_root}/labels", day, "labels.parquet")
    assert np.isfinite(scores).all()


def register_champion_with_validation_scores(tracking_uri: str, *, rows: int = 4000, name: str = "churn") -> str:
    """A champion version whose training run carries ``reference/validation_scores.parquet`` of undrifted days; its version."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from mlops_airflow.constants import VALIDATION_SCORES_ARTIFACT
    from mlops_airflow.embedded.synthetic import generate_day

    frames = [generate_day(DATA_END - dt.timedelta(days=40 + i), rows=rows // 4, seed=5) for i in range(4)]
    validation = pd.concat(frames, ignore_index=True)
    scores = champion_scores(validation)
    table = pd.DataFrame({"label": validation["churned"], "probability_0": 1.0 - scores, "probability_1": scores, "contract": validation["contract"]})
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name) or client.get_experiment(client.create_experiment(name))
    run = client.create_run(experiment.experiment_id)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(VALIDATION_SCORES_ARTIFACT).name
        table.to_parquet(path, index=False)
        client.log_artifact(run.info.run_id, str(path), str(Path(VALIDATION_SCORES_ARTIFACT).parent))
    client.set_terminated(run.info.run_id)
    if client.search_registered_models(f"name = '{name}'") == []:
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)
