"""The inference log read back as predictions: one row per scored row, with the key that joins it to its label.

Where it sits in the loop: the model servers log every live request and answer
(:mod:`mlops_airflow.serving.inference_log`); the performance monitor joins these rows with the
labels as they arrive, beside the batch predictions, and the release outcomes
(:mod:`mlops_airflow.core.release_outcomes`) compare two versions' answers on them.

A row's key, in this order:

- the request's own column named ``performance.key`` (``dataframe_split``, ``dataframe_records``,
  or ``instances`` / ``inputs`` given as records or columns): the model server leaves it out of
  what the model sees, so a client may send it beside the features;
- for a request of one row without that column, its ``X-Request-Id`` (the replayed copy of a
  shadow release carries ``replay-<the live id>``: the prefix is taken off).

A request whose key cannot be found, or whose answer does not hold one score per row, is counted,
not guessed. Pure pandas and json; no Airflow.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_airflow.constants import PARTITION_KEY

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.specs import ModelSpec

REPLAY_ID_PREFIX = "replay-"  # a replayed request's X-Request-Id: the live one's, so that the two answers join in the log
SCORE = "score"  # the positive class's probability (the last one of a row of class probabilities)
LOG_COLUMNS = ("ts", "request_id", "model", "version", "color", "route", "status", "request", "response")


@dataclass(frozen=True)
class LoggedPredictions:
    """What the log gave: the keyed rows, and the answered requests that could not be used."""

    frame: pd.DataFrame  # dt, <key>, score, version, color, route, request_id, row (its place in the request), ts
    unkeyed_requests: int = 0  # answered, but without the key column (and not one row with a request id)
    unmatched_requests: int = 0  # the answer does not hold one score per row of the request


def read_log(spec: ModelSpec, start: dt.datetime, end: dt.datetime, columns: Sequence[str]) -> pd.DataFrame:
    """The inference log's rows of this model in ``[start, end)``, every route (live and a colour's own URL), each answer once."""
    from mlops_airflow.core.partitions import read_period

    return _this_models_answers(spec, read_period(spec.serving.inference_log.uri, start, end, columns=list(columns)))


def read_log_day(spec: ModelSpec, day: dt.date, columns: Sequence[str]) -> pd.DataFrame:
    """The inference log's rows of this model on ``day`` (UTC): its one partition, each answer once."""
    from mlops_airflow.core.partitions import read_window

    frame = read_window(spec.serving.inference_log.uri, day, day + dt.timedelta(days=1), list(columns)).frame
    return _this_models_answers(spec, frame)


def _this_models_answers(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    # This model's (two models may share a log): the name the local and Docker servers log, or the
    # registered name a Kubernetes server reads from its models:/ URI.
    frame = frame[frame["model"].isin({spec.name, spec.registered_model_name})]
    # A write to object storage that timed out after it landed is written again by the next flush: the
    # same answer in two files. One answer is one arrival of one request id at one colour's version.
    identity = [c for c in ("ts", "request_id", "color", "version", "route") if c in frame.columns]
    if len(identity) == 5:
        frame = frame.drop_duplicates(identity)
    return frame.reset_index(drop=True)


def request_keys(request: bytes, key: str) -> list[Any] | None:
    """The values of column ``key`` in a JSON scoring request, one per row; ``None`` when it has none."""
    try:
        body = json.loads(request)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    split = body.get("dataframe_split")
    if isinstance(split, dict):
        columns, data = split.get("columns"), split.get("data")
        if isinstance(columns, list) and key in columns and isinstance(data, list) and all(isinstance(row, list) and len(row) == len(columns) for row in data):
            at = columns.index(key)
            return [row[at] for row in data]
        return None
    for name in ("dataframe_records", "instances", "inputs"):
        records = body.get(name)
        if isinstance(records, list) and records and all(isinstance(row, dict) and key in row for row in records):
            return [row[key] for row in records]
        if isinstance(records, dict) and isinstance(records.get(key), list):
            return list(records[key])
    return None


def keys_like(logged: LoggedPredictions, key: str, like: Any) -> LoggedPredictions:
    """``logged`` with its keys read as the labels' key type ``like`` (a dtype; None: as they are).

    JSON keys come as text or numbers, whatever the labels hold: a numeric key sent as text is
    converted, and a key that does not convert (a server-made request id, say) is dropped and
    counted as unkeyed. Numeric labels keep their keys as numbers, others as text.
    """
    import pandas as pd

    frame = logged.frame
    if like is None or frame.empty:
        return logged
    if pd.api.types.is_integer_dtype(like) and not pd.api.types.is_bool_dtype(like):
        # Exactly: through float64 an id above 2**53 would join another id's label.
        text = frame[key].astype(str).str.strip()
        usable = text.str.fullmatch(r"[+-]?\d+")
        converted = text[usable].astype("int64")
    elif pd.api.types.is_float_dtype(like):
        numbers = pd.to_numeric(frame[key], errors="coerce")
        usable = numbers.notna()
        converted = numbers[usable]
    else:
        return LoggedPredictions(frame.assign(**{key: frame[key].astype(str)}), logged.unkeyed_requests, logged.unmatched_requests)
    lost = frame.loc[~usable, "request_id"].nunique()  # requests, as unkeyed_requests counts them
    frame = frame[usable].assign(**{key: converted}).reset_index(drop=True)
    return LoggedPredictions(frame, unkeyed_requests=logged.unkeyed_requests + lost, unmatched_requests=logged.unmatched_requests)


def logged_predictions(log: pd.DataFrame, *, key: str) -> LoggedPredictions:
    """One row per scored row of the log's answered (200) requests, keyed (module docstring)."""
    import pandas as pd

    from mlops_airflow.core.release_analysis import scores

    columns = [PARTITION_KEY, key, SCORE, "version", "color", "route", "request_id", "row", "ts"]
    if log.empty:
        return LoggedPredictions(pd.DataFrame(columns=columns))
    answered = log[log["status"] == 200]
    rows: list[tuple] = []
    unkeyed = unmatched = 0
    for ts, request_id, version, color, route, request, response in zip(
        answered["ts"],
        answered["request_id"],
        answered["version"],
        answered["color"],
        answered["route"],
        answered["request"],
        answered["response"],
        strict=True,
    ):
        values = scores(response)
        keys = request_keys(request, key)
        if keys is None and len(values) == 1 and request_id:
            keys = [request_id.removeprefix(REPLAY_ID_PREFIX)]
        if keys is None:
            unkeyed += 1
            continue
        if len(keys) != len(values):
            unmatched += 1
            continue
        day = ts.date()
        rows.extend((day, k, v, version, color, route, request_id, row, ts) for row, (k, v) in enumerate(zip(keys, values, strict=True)))
    frame = pd.DataFrame(rows, columns=columns)
    # A key of None (a null in the request) joins no label.
    return LoggedPredictions(frame[frame[key].notna()].reset_index(drop=True), unkeyed_requests=unkeyed, unmatched_requests=unmatched)
