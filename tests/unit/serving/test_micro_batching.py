"""Micro-batching against a real MLflow model: merged answers equal MLflow's own, one bad request fails alone, limits refuse."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from mlops_airflow.serving.micro_batching import MicroBatcher, Overloaded, batch_key

COLUMNS = ["x1", "x2", "segment"]
ROWS = [[0.1, 0.2, "a"], [0.9, 0.8, "b"], [0.4, 0.7, "a"], [0.6, 0.1, "b"]]


def split(rows, columns=COLUMNS, **extra) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows, **extra}}).encode()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A logistic regression behind a column transformer (numeric and categorical inputs), loaded as the servers load it."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from mlops_airflow.core.model_loading import load_model_dir

    frame = pd.DataFrame(ROWS * 5, columns=COLUMNS)
    labels = [0, 1, 0, 1] * 5
    pipeline = Pipeline(
        [("features", ColumnTransformer([("num", "passthrough", ["x1", "x2"]), ("cat", OneHotEncoder(), ["segment"])])), ("lr", LogisticRegression())]
    ).fit(frame, labels)
    path = tmp_path_factory.mktemp("model") / "m"
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        signature=infer_signature(frame, pipeline.predict_proba(frame)),
        pyfunc_predict_fn="predict_proba",
        serialization_format="skops",
        pip_requirements=["scikit-learn"],  # inferring them re-loads the model in a subprocess
    )
    trusted = ["numpy.dtype", "sklearn.compose._column_transformer._RemainderColsList"]
    import skops.io

    trusted += [t for t in skops.io.get_untrusted_types(file=path / "model.skops") if t not in trusted]
    return load_model_dir(path, what="test model", trusted=trusted)


def alone(model, body: bytes, content_type: str = "application/json"):
    """What MLflow's own scoring function answers for one request."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    try:
        result = invocations(body, content_type, model, model.metadata.get_input_schema())
    except MlflowException as err:
        return err.get_http_status_code(), json.loads(err.serialize_as_json())
    return result.status, json.loads(result.response)


class Gate:
    """Wraps a model so that its ``predict`` waits until the test opens the gate."""

    def __init__(self, model) -> None:
        self.model = model
        self.metadata = model.metadata
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.calls: list[int] = []

    def predict(self, frame, *args, **kwargs):
        self.calls.append(len(frame))
        self.entered.set()
        assert self.opened.wait(10)
        return self.model.predict(frame, *args, **kwargs)


class TestBatchKey:
    def test_split_merges_by_its_columns(self):
        key, rows, columns = batch_key(split(ROWS[:2]), "application/json")
        assert (key, rows, columns) == (("dataframe_split", tuple(COLUMNS)), ROWS[:2], COLUMNS)
        assert batch_key(split(ROWS[:1]), "application/json; charset=utf-8")[0] == key
        assert batch_key(split([[0.1, "a", 0.2]], ["x1", "segment", "x2"]), "application/json")[0] != key

    def test_records_merge_when_they_share_their_keys(self):
        records = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS[:2]]
        assert batch_key(json.dumps({"dataframe_records": records}).encode(), "application/json")[0] == ("dataframe_records", tuple(COLUMNS))
        uneven = json.dumps({"dataframe_records": [records[0], {"x1": 1.0}]}).encode()
        assert batch_key(uneven, "application/json")[0] is None

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            pytest.param(split(ROWS[:1], index=[7]), "application/json", id="an index"),
            pytest.param(json.dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS[:1]}, "params": {}}).encode(), "application/json", id="params"),
            pytest.param(json.dumps({"instances": [dict(zip(COLUMNS, ROWS[0], strict=True))]}).encode(), "application/json", id="instances"),
            pytest.param(json.dumps({"inputs": {"x1": [0.1]}}).encode(), "application/json", id="inputs"),
            pytest.param(b"x1,x2,segment\n0.1,0.2,a\n", "text/csv", id="csv"),
            pytest.param(split(ROWS[:1]), "application/json; charset=latin-1", id="another charset"),
            pytest.param(b"{not json", "application/json", id="not JSON"),
            pytest.param(split([[0.1, 0.2]]), "application/json", id="a short row"),
            pytest.param(split([]), "application/json", id="no rows"),
        ],
    )
    def test_anything_else_is_scored_alone(self, body, content_type):
        assert batch_key(body, content_type) == (None, [], None)


class TestScoring:
    def test_concurrent_requests_merge_and_each_gets_what_mlflow_answers_alone(self, model):
        gate = Gate(model)
        batcher = MicroBatcher(gate, max_pending=64, max_batch_rows=1000, max_wait=5)
        bodies = [split([ROWS[i % 4], ROWS[(i + 1) % 4]]) for i in range(12)]

        async def scenario():
            first = asyncio.ensure_future(batcher.score(bodies[0], "application/json"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)  # the first request is being scored alone
            rest = [asyncio.ensure_future(batcher.score(body, "application/json")) for body in bodies[1:]]
            await asyncio.sleep(0.05)  # the others wait behind it
            gate.opened.set()
            return await asyncio.gather(first, *rest)

        answers = asyncio.run(scenario())
        assert gate.calls == [2, 22]  # the first alone, then the eleven that waited, in one call
        for body, answer in zip(bodies, answers, strict=True):
            assert (answer.status, json.loads(answer.body)) == alone(model, body)

    def test_a_bad_request_in_a_batch_gets_mlflows_error_and_the_others_their_predictions(self, model):
        gate = Gate(model)
        batcher = MicroBatcher(gate, max_pending=64, max_batch_rows=1000, max_wait=5)
        good, bad = split(ROWS[:2]), split([[0.1, "not a number", "a"]])

        async def scenario():
            first = asyncio.ensure_future(batcher.score(good, "application/json"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
            rest = [asyncio.ensure_future(batcher.score(body, "application/json")) for body in (good, bad, good)]
            await asyncio.sleep(0.05)
            gate.opened.set()
            return await asyncio.gather(first, *rest)

        answers = asyncio.run(scenario())
        expected_bad = alone(model, bad)
        assert expected_bad[0] == 400
        assert [(a.status, json.loads(a.body)) for a in answers] == [alone(model, good), alone(model, good), expected_bad, alone(model, good)]

    def test_other_formats_are_answered_as_mlflow_answers_them(self, model):
        batcher = MicroBatcher(model, max_pending=8, max_batch_rows=100, max_wait=5)
        for body, content_type in (
            (json.dumps({"instances": [dict(zip(COLUMNS, ROWS[0], strict=True))]}).encode(), "application/json"),
            (b"x1,x2,segment\n0.1,0.2,a\n0.9,0.8,b\n", "text/csv"),
            (b"{not json", "application/json"),
            (split(ROWS[:1]), "text/plain"),
        ):
            answer = asyncio.run(batcher.score(body, content_type))
            status, payload = alone(model, body, content_type) if content_type != "text/plain" else (415, None)
            assert answer.status == status
            if payload is not None:
                assert json.loads(answer.body) == payload

    def test_rows_past_max_batch_rows_wait_for_the_next_batch(self, model):
        gate = Gate(model)
        batcher = MicroBatcher(gate, max_pending=64, max_batch_rows=4, max_wait=5)

        async def scenario():
            first = asyncio.ensure_future(batcher.score(split(ROWS[:2]), "application/json"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
            rest = [asyncio.ensure_future(batcher.score(split(ROWS[:2]), "application/json")) for _ in range(4)]
            await asyncio.sleep(0.05)
            gate.opened.set()
            return await asyncio.gather(first, *rest)

        assert all(a.status == 200 for a in asyncio.run(scenario()))
        assert gate.calls == [2, 4, 4]  # the first alone, then two requests (four rows) per call


class TestAdmission:
    def test_a_request_past_max_pending_is_refused_at_once(self, model):
        gate = Gate(model)
        batcher = MicroBatcher(gate, max_pending=2, max_batch_rows=100, max_wait=5)

        async def scenario():
            held = [asyncio.ensure_future(batcher.score(split(ROWS[:1]), "application/json")) for _ in range(2)]
            await asyncio.sleep(0)
            with pytest.raises(Overloaded, match="2 requests are waiting or running"):
                await batcher.score(split(ROWS[:1]), "application/json")
            gate.opened.set()
            return await asyncio.gather(*held)

        assert [a.status for a in asyncio.run(scenario())] == [200, 200]
        assert (batcher.refused, batcher.in_flight) == (1, 0)

    def test_a_request_that_waited_past_max_wait_is_refused_not_scored(self, model):
        gate = Gate(model)
        now = [100.0]
        batcher = MicroBatcher(gate, max_pending=8, max_batch_rows=100, max_wait=1.0, clock=lambda: now[0])

        async def scenario():
            first = asyncio.ensure_future(batcher.score(split(ROWS[:1]), "application/json"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
            late = asyncio.ensure_future(batcher.score(split(ROWS[:2]), "application/json"))
            await asyncio.sleep(0)
            now[0] += 1.5
            gate.opened.set()
            assert (await first).status == 200
            with pytest.raises(Overloaded, match="waited 1.50 s"):
                await late

        asyncio.run(scenario())
        assert gate.calls == [1]

    def test_a_request_whose_client_gave_up_is_never_scored_and_frees_its_place(self, model):
        gate = Gate(model)
        batcher = MicroBatcher(gate, max_pending=8, max_batch_rows=100, max_wait=5)

        async def scenario():
            first = asyncio.ensure_future(batcher.score(split(ROWS[:1]), "application/json"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
            with pytest.raises(TimeoutError):  # as the app's request timeout does
                await asyncio.wait_for(batcher.score(split(ROWS[:2]), "application/json"), timeout=0.05)
            assert batcher.in_flight == 1
            gate.opened.set()
            assert (await first).status == 200
            await asyncio.sleep(0.05)  # the drain loop looks at the queue once more

        asyncio.run(scenario())
        assert gate.calls == [1]
        assert batcher.in_flight == 0

    @pytest.mark.parametrize("arguments", [{"max_pending": 0}, {"max_batch_rows": 0}, {"max_wait": 0}])
    def test_limits_must_be_positive(self, model, arguments):
        with pytest.raises(ValueError, match="must be at least 1"):
            MicroBatcher(model, **{"max_pending": 1, "max_batch_rows": 1, "max_wait": 1.0, **arguments})


class TestWhatMerges:
    def test_requests_with_the_same_columns_merge_and_a_column_beside_the_signatures_is_left_out(self, model):
        gate = Gate(model)
        batcher = MicroBatcher(gate, max_pending=64, max_batch_rows=1000, max_wait=5)
        assert batcher.mergeable_columns == frozenset(COLUMNS)
        keyed = [split([[*ROWS[0], "c-1"]], [*COLUMNS, "customer_id"]), split([[*ROWS[1], "c-2"], [*ROWS[2], "c-3"]], [*COLUMNS, "customer_id"])]
        missing = split([row[:2] for row in ROWS[:1]], COLUMNS[:2])

        async def scenario():
            first = asyncio.ensure_future(batcher.score(split(ROWS[:1]), "application/json"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
            rest = [asyncio.ensure_future(batcher.score(body, "application/json")) for body in (*keyed, missing, split(ROWS[:2]))]
            await asyncio.sleep(0.05)
            gate.opened.set()
            return await asyncio.gather(first, *rest)

        answers = asyncio.run(scenario())
        # The two keyed requests merged (3 rows) without their key; the one short of a signature column went alone.
        assert gate.calls == [1, 3, 1, 2]
        for answer, body in zip(answers[1:4], [*keyed, missing], strict=True):
            assert (answer.status, json.loads(answer.body)) == alone(model, body)
        assert answers[3].status == 400

    def test_nothing_merges_for_a_datetime_column_or_no_signature(self):
        from types import SimpleNamespace

        from mlflow.models.signature import ModelSignature
        from mlflow.types import ColSpec, Schema

        from mlops_airflow.serving.micro_batching import mergeable_columns

        def with_schema(schema):
            signature = ModelSignature(inputs=schema) if schema is not None else None
            return SimpleNamespace(metadata=SimpleNamespace(get_input_schema=lambda: signature.inputs if signature else None))

        assert mergeable_columns(with_schema(Schema([ColSpec("double", "x"), ColSpec("string", "s")]))) == {"x", "s"}
        assert mergeable_columns(with_schema(Schema([ColSpec("double", "x"), ColSpec("datetime", "when")]))) is None
        assert mergeable_columns(with_schema(None)) is None

    def test_a_request_that_breaks_the_scorer_itself_fails_alone(self, model, monkeypatch):
        from mlflow.pyfunc import scoring_server

        real = scoring_server.invocations

        def breaks_on_the_second(data, *args):
            if b"0.9" in data:
                raise RuntimeError("not an MLflow error")
            return real(data, *args)

        monkeypatch.setattr(scoring_server, "invocations", breaks_on_the_second)
        batcher = MicroBatcher(model, max_pending=8, max_batch_rows=100, max_wait=5)
        batcher.mergeable_columns = None  # every request alone

        async def scenario():
            return await asyncio.gather(*(batcher.score(split([row]), "application/json") for row in ROWS[:2]))

        good, broken = asyncio.run(scenario())
        assert good.status == 200
        assert (broken.status, json.loads(broken.body)["message"]) == (500, "scoring failed: RuntimeError")
