"""Micro-batching of concurrent scoring requests, with admission control.

Where it sits in the loop: every worker of a colour's model server (:mod:`mlops_airflow.serving.model_server`)
scores through one :class:`MicroBatcher`. A model costs about the same for 2 rows as for 200 (the
churn pipeline: 8 ms per call, 5 µs per row), so requests that arrive while the model is busy are
merged and scored in one call when it is free: no timer, a request alone is scored at once.

Exactness: requests are merged only when MLflow would parse them the same way alone and together:
the same format and columns, every one of the signature's among them and none of those datetime or
binary (pandas infers those from the rows it sees together). Columns beside the signature's (the
performance monitor's join key, say) are left out before the model is called, as MLflow's schema
enforcement leaves them out of a request scored alone. The merged rows go through MLflow's own parser and the
model's signature enforcement once. A tree ensemble (the demo's) answers identically merged or
alone; a linear model can differ in the last bits (BLAS sums a batch in another order, ~1e-15). When a merged batch fails (one request's bad value), each of its
requests is scored alone through MLflow's own ``invocations``: the bad one gets MLflow's error, the
others their predictions.

Admission control: at most ``max_pending`` requests wait or run in a worker. One more is refused at
once with :class:`Overloaded` (the app answers 503 with ``Retry-After``, before it reads the body),
and a request that waited longer than ``max_wait`` for its batch to start is answered the same way
instead of being scored: work is never queued beyond what the worker can do while the client still
waits. The limits are a worker's: under load a busy worker may refuse while another has room. Nothing here imports Airflow.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

SPLIT = "dataframe_split"
RECORDS = "dataframe_records"
_PLAIN_JSON = {"application/json", "application/json;charset=utf-8"}


class Overloaded(Exception):
    """The worker has more work than it can do in time; the request is refused, not queued."""


@dataclass(frozen=True)
class ScoringResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    retry_after: int | None = None  # seconds, on a refusal


@dataclass
class _Pending:
    body: bytes
    content_type: str
    key: tuple | None  # requests with the same key merge; None: scored alone
    rows: list  # the request's rows (split: lists; records: dicts)
    columns: list | None
    enqueued: float
    future: asyncio.Future = field(repr=False)


def batch_key(body: bytes, content_type: str) -> tuple[tuple | None, list, list | None]:
    """How a request may merge: ``(key, rows, columns)``; key ``None`` when it is scored alone.

    Only plain JSON ``dataframe_split`` (``columns`` and ``data``, no index, no params) and
    ``dataframe_records`` whose records share their keys merge; anything else (CSV, Parquet,
    ``instances``, ``inputs``, a body MLflow would refuse) goes through MLflow's own path alone.
    """
    if content_type.replace(" ", "").lower() not in _PLAIN_JSON:
        return None, [], None
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, [], None
    if not isinstance(decoded, dict) or len(decoded) != 1:
        return None, [], None
    if SPLIT in decoded:
        split = decoded[SPLIT]
        if not isinstance(split, dict) or set(split) != {"columns", "data"}:
            return None, [], None
        columns, rows = split["columns"], split["data"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or not isinstance(rows, list) or not rows:
            return None, [], None
        width = len(columns)
        if not all(isinstance(row, list) and len(row) == width for row in rows):
            return None, [], None
        return (SPLIT, tuple(columns)), rows, columns
    if RECORDS in decoded:
        records = decoded[RECORDS]
        if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
            return None, [], None
        keys = tuple(records[0])
        if not all(tuple(r) == keys for r in records):
            return None, [], None
        return (RECORDS, keys), records, None
    return None, [], None


# Signature types whose values MLflow casts the same way whatever rows share a frame with them.
_MERGEABLE_TYPES = frozenset({"double", "float", "long", "integer", "boolean", "string"})


def mergeable_columns(model: Any) -> frozenset[str] | None:
    """The columns a merged request must have: exactly the signature's, every one of a type in :data:`_MERGEABLE_TYPES`.

    ``None`` (nothing merges) for a model without a column signature, with a datetime or binary
    column (pandas infers those from the rows it sees together), or whose signature comes from
    type hints (MLflow hands those models the raw input, not a frame).
    """
    metadata = model.metadata
    schema = metadata.get_input_schema()
    from_type_hint = getattr(metadata, "_is_signature_from_type_hint", lambda: False)()
    if schema is None or from_type_hint or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    if not all(getattr(t, "name", str(t)) in _MERGEABLE_TYPES for t in schema.input_types()):
        return None
    return frozenset(schema.input_names())


class MicroBatcher:
    """
    Scores requests for one model, merging those that wait together; one batch at a time.

    :param model: an MLflow ``PyFuncModel``.
    :param max_pending: requests that may wait or run at once; one more is refused.
    :param max_batch_rows: the most rows merged into one model call.
    :param max_wait: seconds a request may wait for its batch to start; longer, it is refused.
    :param clock: for tests.
    """

    def __init__(self, model: Any, *, max_pending: int, max_batch_rows: int, max_wait: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_pending < 1 or max_batch_rows < 1 or max_wait <= 0:
            raise ValueError(f"max_pending ({max_pending}) and max_batch_rows ({max_batch_rows}) must be at least 1, max_wait ({max_wait}) above 0")
        self.model = model
        self.input_schema = model.metadata.get_input_schema()
        self.mergeable_columns = mergeable_columns(model)
        self.max_pending = max_pending
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait
        self.clock = clock
        self.pending: list[_Pending] = []
        self.in_flight = 0  # requests waiting or in the running batch
        self.refused = 0
        self.batches = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
        self._running: asyncio.Task | None = None

    async def score(self, body: bytes, content_type: str) -> ScoringResponse:
        """The response for one request; raises :class:`Overloaded` instead of queueing past the limits."""
        if self.in_flight >= self.max_pending:
            self.refused += 1
            raise Overloaded(f"{self.in_flight} requests are waiting or running (at most {self.max_pending})")
        key, rows, columns = batch_key(body, content_type)
        if key is not None and (self.mergeable_columns is None or not self.mergeable_columns <= frozenset(key[1])):
            key = None  # a column of the signature missing, or one it does not type: pandas would infer it across requests
        future = asyncio.get_running_loop().create_future()
        self.pending.append(_Pending(body, content_type, key, rows, columns, self.clock(), future))
        self.in_flight += 1
        try:
            if self._running is None or self._running.done():
                self._running = asyncio.ensure_future(self._drain())
            return await future
        finally:
            self.in_flight -= 1

    async def _drain(self) -> None:
        try:
            await self._drain_pending()
        except BaseException as err:  # whatever broke the loop, nobody is left waiting for ever
            waiting, self.pending = self.pending, []
            for item in waiting:
                if not item.future.done():
                    item.future.set_result(_error(500, f"scoring failed: {type(err).__name__}"))
            raise

    async def _drain_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            batch = self._take_batch()
            if not batch:
                continue
            try:
                responses = await loop.run_in_executor(self._executor, self._score_batch, batch)
            except Exception as err:  # every waiter gets an answer, whatever happened
                responses = [_error(500, f"scoring failed: {type(err).__name__}")] * len(batch)
            for item, response in zip(batch, responses, strict=True):
                if not item.future.done():
                    item.future.set_result(response)

    def _take_batch(self) -> list[_Pending]:
        """The oldest request and every waiting one that merges with it (up to ``max_batch_rows``); stale ones are refused."""
        now = self.clock()
        fresh = []
        for item in self.pending:
            if item.future.done():  # its client's request timed out or went away: nobody waits for the answer
                continue
            if now - item.enqueued > self.max_wait:
                self.refused += 1
                item.future.set_exception(Overloaded(f"waited {now - item.enqueued:.2f} s for the model (at most {self.max_wait:g} s)"))
            else:
                fresh.append(item)
        if not fresh:
            self.pending = []
            return []
        first = fresh[0]
        if first.key is None:
            self.pending = fresh[1:]
            return [first]
        batch, rest, rows = [], [], 0
        for item in fresh:
            if item.key == first.key and (not batch or rows + len(item.rows) <= self.max_batch_rows):
                batch.append(item)
                rows += len(item.rows)
            else:
                rest.append(item)
        self.pending = rest
        return batch

    # -- in the scoring thread -------------------------------------------------------------

    def _score_batch(self, batch: list[_Pending]) -> list[ScoringResponse]:
        self.batches += 1
        if len(batch) > 1:
            try:
                return self._score_merged(batch)
            except Exception:  # noqa: S110 - one request's bad value: each is scored alone below, with MLflow's own error
                pass
        return [self._score_alone(item) for item in batch]

    def _score_merged(self, batch: list[_Pending]) -> list[ScoringResponse]:
        from mlflow.pyfunc.scoring_server import predictions_to_json
        from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

        fmt, columns = batch[0].key
        rows = [row for item in batch for row in item.rows]
        parsed = {"columns": list(columns), "data": rows} if fmt == SPLIT else rows
        frame = dataframe_from_parsed_json(parsed, pandas_orient=fmt[len("dataframe_") :], schema=self.input_schema)
        if len(columns) > len(self.mergeable_columns):  # a column beside the features (a join key): the model never sees it
            frame = frame[[c for c in frame.columns if c in self.mergeable_columns]]
        predictions = self.model.predict(frame)
        if len(predictions) != len(rows):
            raise ValueError(f"{len(predictions)} predictions for {len(rows)} rows")
        responses, start = [], 0
        for item in batch:
            end = start + len(item.rows)
            out = _Writer()
            predictions_to_json(_rows_of(predictions, start, end), out)
            responses.append(ScoringResponse(200, out.getvalue().encode()))
            start = end
        return responses

    def _score_alone(self, item: _Pending) -> ScoringResponse:
        """Exactly what MLflow's scoring server answers for this request."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import invocations

        try:
            result = invocations(item.body, item.content_type, self.model, self.input_schema)
        except MlflowException as err:
            return ScoringResponse(err.get_http_status_code(), err.serialize_as_json().encode())
        except Exception as err:  # this request's failure is its own: the others of its batch are answered
            return _error(500, f"scoring failed: {type(err).__name__}")
        return ScoringResponse(result.status, result.response.encode() if isinstance(result.response, str) else result.response, result.mimetype)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _rows_of(predictions: Any, start: int, end: int) -> Any:
    """Rows ``start:end`` of a model's output, whatever its type (array, frame, series, list)."""
    if hasattr(predictions, "iloc"):
        return predictions.iloc[start:end]
    return predictions[start:end]


def _error(status: int, message: str) -> ScoringResponse:
    return ScoringResponse(status, json.dumps({"error_code": "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST", "message": message}).encode())


class _Writer:
    """A minimal text buffer for ``json.dump``."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def getvalue(self) -> str:
        return "".join(self.parts)
