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


def write_live_days(data_root, version: str, *, concept: float = 0.0, rows_per_day: int = 800, days: int = 10, live_share: float = 0.0) -> None:
    """``days`` days ending at RUN_DAY: events, the champion's predictions (as batch_score writes them), and labels
    for the days before LABELLED_END only. With ``concept``, the label relationship changes on every one of them.
    With ``live_share``, that share of each day's rows is not batch-scored but answered live (the inference log)."""
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
        live = int(len(frame) * live_share)
        if live:
            at = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC)
            requests = [
                (at + dt.timedelta(seconds=i), f"{day}-{i}", keyed_request(frame.iloc[i : i + 2]), answer(scores[i : i + 2])) for i in range(0, live, 2)
            ]
            log_answers(f"{data_root}/events/_inference_log", version, requests)
        predictions = frame[["customer_id", "event_ts"]].iloc[live:]
        predictions = predictions.assign(
            prediction=(scores[live:] >= 0.5).astype("int64"), probability_0=1.0 - scores[live:], probability_1=scores[live:], model_version=version
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


def log_answers(log_uri, version: str, rows, *, color: str = "blue", route: str = "live") -> None:
    """Write answered requests to the inference log as a model server does: ``rows`` of (time, request id, request body, response body)."""
    from mlops_airflow.serving.inference_log import InferenceLog, InferenceLogSettings

    log = InferenceLog(InferenceLogSettings(uri=str(log_uri)), model="churn", version=version, color=color)
    for arrived, request_id, request, response in rows:
        log.record(
            arrived=arrived.timestamp(),
            request_id=request_id,
            status=200,
            latency_ms=4.0,
            content_type="application/json",
            request=request,
            response=response,
            route=route,
        )
    assert log.flush() == len(rows)


def keyed_request(frame) -> bytes:
    """A ``dataframe_split`` scoring request of ``frame``'s features with the ``customer_id`` key beside them."""
    import json

    from mlops_airflow.embedded.synthetic import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    columns = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, "customer_id"]
    return json.dumps({"dataframe_split": json.loads(frame[columns].to_json(orient="split", index=False))}).encode()


def answer(scores) -> bytes:
    import json

    return json.dumps({"predictions": [[1.0 - float(s), float(s)] for s in scores]}).encode()


def noisy_scores(frame, *, noise: float, seed: int):
    """The champion's scores blurred on the logit scale: a worse model of the same rows."""
    import numpy as np

    if not noise:
        return champion_scores(frame)
    logit = np.log(champion_scores(frame)) - np.log1p(-champion_scores(frame))
    return 1.0 / (1.0 + np.exp(-(logit + np.random.default_rng(seed).normal(scale=noise, size=len(frame)))))


def write_release_traffic(
    data_root,
    strategy: str,
    *,
    day: dt.date,
    new: str,
    old: str,
    rows: int = 1400,
    new_noise: float = 0.0,
    old_noise: float = 2.0,
    seed: int = 21,
    hour: int = 10,
) -> dict:
    """A release's live traffic on ``day`` in the inference log, and the labels of its rows; the times its record holds.

    ``ab``: alternate 2-row requests answered by ``new`` and ``old`` through the live URL. ``shadow``: every request
    answered by ``old`` through the live URL, then replayed to ``new`` through its own URL under ``replay-<id>``.
    """
    import pyarrow as pa

    from mlops_airflow.core.partitions import write_partition
    from mlops_airflow.embedded.synthetic import generate_day

    frame = generate_day(day, rows=rows, seed=seed)
    frame = frame.assign(customer_id=f"{strategy}-{seed}-" + frame["customer_id"].astype(str))  # the generator's ids repeat per day
    start = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)
    scores = {new: noisy_scores(frame, noise=new_noise, seed=seed + 1), old: noisy_scores(frame, noise=old_noise, seed=seed + 2)}
    answered: dict[str, list] = {new: [], old: []}
    replayed = []
    for i in range(0, rows, 2):
        at, request_id, request = start + dt.timedelta(seconds=i), f"{strategy}-{i}", keyed_request(frame.iloc[i : i + 2])
        if strategy == "ab":
            version = new if (i // 2) % 2 else old
            answered[version].append((at, request_id, request, answer(scores[version][i : i + 2])))
        else:
            answered[old].append((at, request_id, request, answer(scores[old][i : i + 2])))
            replayed.append((at + dt.timedelta(hours=1), f"replay-{request_id}", request, answer(scores[new][i : i + 2])))
    log_uri = f"{data_root}/events/_inference_log"
    for version, logged in answered.items():
        if logged:
            log_answers(log_uri, version, logged, color="green" if version == new else "blue")
    if replayed:
        log_answers(log_uri, new, replayed, color="green", route="preview")
    labels = frame[["customer_id", "churned"]]
    write_partition(pa.Table.from_pandas(labels, preserve_index=False), f"{data_root}/labels", day, f"{strategy}-{seed}-labels.parquet")
    end = start + dt.timedelta(seconds=rows)
    if strategy == "ab":
        return {"started": start.isoformat(), "ended": end.isoformat(), "baseline_version": old, "verdict": "Inconclusive"}
    return {"window_start": start.isoformat(), "window_end": end.isoformat(), "replayed_until": (end + dt.timedelta(hours=1)).isoformat(), "live_version": old}


def record_release(tracking_uri: str, version: str, strategy: str, record: dict, name: str = "churn") -> None:
    """What the release's ab_test or shadow_replay task records on the new version."""
    import json

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_model_version_tag(name, version, "mlops.release.strategy", strategy)
    client.set_model_version_tag(name, version, f"mlops.release.{strategy}", json.dumps(record))


def register_version(tracking_uri: str, name: str = "churn") -> str:
    """One more version of ``name`` (created when missing), on a run of its own; its number."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name) or client.get_experiment(client.create_experiment(name))
    run = client.create_run(experiment.experiment_id)
    client.set_terminated(run.info.run_id)
    if client.search_registered_models(f"name = '{name}'") == []:
        client.create_registered_model(name)
    return str(client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)
