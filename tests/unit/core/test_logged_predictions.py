"""The inference log read back as keyed predictions: where each row's key comes from, and what is counted instead of guessed."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_airflow.core.logged_predictions import logged_predictions, request_keys

FEATURES = ["tenure_months", "contract"]
TS = dt.datetime(2026, 3, 9, 23, 59, 59, tzinfo=dt.UTC)


def body(**payload) -> bytes:
    return json.dumps(payload).encode()


def answer(*scores: float) -> bytes:
    return json.dumps({"predictions": [[1.0 - s, s] for s in scores]}).encode()


def log(*rows):
    """Log rows: (request_id, request, response[, status])."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "ts": TS + dt.timedelta(seconds=i),
                "request_id": r[0],
                "version": "3",
                "color": "blue",
                "route": "live",
                "status": r[3] if len(r) > 3 else 200,
                "request": r[1],
                "response": r[2],
            }
            for i, r in enumerate(rows)
        ]
    )


class TestRequestKeys:
    @pytest.mark.parametrize(
        ("request_body", "expected"),
        [
            pytest.param(body(dataframe_split={"columns": [*FEATURES, "customer_id"], "data": [[3, "a", "c-1"], [4, "b", "c-2"]]}), ["c-1", "c-2"], id="split"),
            pytest.param(body(dataframe_records=[{"tenure_months": 3, "customer_id": 7}, {"tenure_months": 4, "customer_id": 8}]), [7, 8], id="records"),
            pytest.param(body(instances=[{"customer_id": "c-1"}]), ["c-1"], id="instances-records"),
            pytest.param(body(inputs={"customer_id": ["c-1", "c-2"], "tenure_months": [1, 2]}), ["c-1", "c-2"], id="inputs-columns"),
            pytest.param(body(dataframe_split={"columns": FEATURES, "data": [[3, "a"]]}), None, id="split-without-key"),
            pytest.param(body(dataframe_records=[{"customer_id": "c-1"}, {"tenure_months": 4}]), None, id="a-record-without-key"),
            pytest.param(body(dataframe_split={"columns": [*FEATURES, "customer_id"], "data": [[3, "a"]]}), None, id="ragged-row"),
            pytest.param(b"tenure_months,customer_id\n3,c-1\n", None, id="csv"),
            pytest.param(b"[1, 2]", None, id="not-an-object"),
        ],
    )
    def test_the_key_column_of_each_format(self, request_body, expected):
        assert request_keys(request_body, "customer_id") == expected


class TestLoggedPredictions:
    def test_one_row_per_scored_row_keyed_by_its_column_on_the_day_of_the_request(self):
        split = body(dataframe_split={"columns": [*FEATURES, "customer_id"], "data": [[3, "a", "c-1"], [4, "b", "c-2"]]})
        result = logged_predictions(log(("r1", split, answer(0.2, 0.9))), key="customer_id")
        frame = result.frame
        assert frame[["dt", "customer_id", "score", "request_id", "row"]].values.tolist() == [
            [dt.date(2026, 3, 9), "c-1", 0.2, "r1", 0],
            [dt.date(2026, 3, 9), "c-2", 0.9, "r1", 1],
        ]
        assert (result.unkeyed_requests, result.unmatched_requests) == (0, 0)

    def test_a_one_row_request_without_the_column_is_keyed_by_its_request_id_without_the_replay_prefix(self):
        plain = body(dataframe_split={"columns": FEATURES, "data": [[3, "a"]]})
        result = logged_predictions(log(("c-9", plain, answer(0.4)), ("replay-c-9", plain, answer(0.5))), key="customer_id")
        assert result.frame["customer_id"].tolist() == ["c-9", "c-9"]
        assert result.frame["request_id"].tolist() == ["c-9", "replay-c-9"]

    def test_what_cannot_be_keyed_or_matched_is_counted_and_errors_are_not_predictions(self):
        two_rows = body(dataframe_split={"columns": FEATURES, "data": [[3, "a"], [4, "b"]]})
        keyed = body(dataframe_split={"columns": [*FEATURES, "customer_id"], "data": [[3, "a", "c-1"], [4, "b", None]]})
        result = logged_predictions(
            log(
                ("r1", two_rows, answer(0.1, 0.2)),  # two rows, no key column: the request id keys no row
                ("r2", keyed, answer(0.3)),  # one score for two rows
                ("r3", keyed, b'{"error_code": "BAD_REQUEST"}', 400),
                ("r4", keyed, answer(0.3, 0.6)),  # the second row's key is null: it joins nothing
            ),
            key="customer_id",
        )
        assert (result.unkeyed_requests, result.unmatched_requests) == (1, 1)
        assert result.frame[["customer_id", "score"]].values.tolist() == [["c-1", 0.3]]

    def test_an_empty_log_gives_an_empty_frame_with_the_columns(self):
        import pandas as pd

        result = logged_predictions(pd.DataFrame(), key="customer_id")
        assert result.frame.empty
        assert {"dt", "customer_id", "score", "version", "row"} <= set(result.frame.columns)


def test_an_answer_written_twice_is_read_once(tmp_path):
    """A write to object storage that timed out after it landed is written again: the reader counts the answer once."""
    import yaml
    from helpers import REPO_ROOT
    from labelled_predictions import log_answers

    from mlops_airflow.core.logged_predictions import read_log
    from mlops_airflow.specs import parse_spec

    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    raw["serving"]["inference_log"]["uri"] = str(tmp_path / "log")
    spec = parse_spec(raw, source="churn.yaml")
    rows = [(TS, f"r{i}", b"{}", answer(0.5)) for i in range(3)]
    log_answers(spec.serving.inference_log.uri, "3", rows)
    log_answers(spec.serving.inference_log.uri, "3", rows[:2])  # the retried write
    log_answers(spec.serving.inference_log.uri, "3", [(TS, "r0", b"{}", answer(0.5))], color="green")  # another colour's own answer
    frame = read_log(spec, TS, TS + dt.timedelta(seconds=1), ["ts", "request_id", "model", "version", "color", "route"])
    assert sorted(zip(frame["request_id"], frame["color"], strict=True)) == [("r0", "blue"), ("r0", "green"), ("r1", "blue"), ("r2", "blue")]


def test_keys_are_read_as_the_labels_key_type_and_what_does_not_convert_is_counted():
    import numpy as np
    import pandas as pd

    from mlops_airflow.core.logged_predictions import keys_like

    plain = body(dataframe_split={"columns": FEATURES, "data": [[3, "a"]]})
    keyed = body(dataframe_split={"columns": [*FEATURES, "customer_id"], "data": [[3, "a", "17"], [4, "b", 18]]})
    logged = logged_predictions(log(("r1", keyed, answer(0.2, 0.9)), ("0f3a9c", plain, answer(0.4))), key="customer_id")
    numeric = keys_like(logged, "customer_id", np.dtype("int64"))
    assert numeric.frame["customer_id"].tolist() == [17, 18]  # "17" sent as text joins the label 17
    assert numeric.unkeyed_requests == 1  # the server-made request id is no customer id
    text = keys_like(logged, "customer_id", pd.StringDtype())
    assert text.frame["customer_id"].tolist() == ["17", "18", "0f3a9c"]
    assert keys_like(logged, "customer_id", None) is logged
    # Exactly, past 2**53: through a float the id would join its neighbour's label.
    big = body(dataframe_split={"columns": [*FEATURES, "customer_id"], "data": [[3, "a", "9007199254740993"]]})
    exact = keys_like(logged_predictions(log(("r2", big, answer(0.5))), key="customer_id"), "customer_id", np.dtype("int64"))
    assert exact.frame["customer_id"].tolist() == [9007199254740993]
