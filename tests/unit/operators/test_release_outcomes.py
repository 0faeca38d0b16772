"""A/B tests and shadow replays judged on their outcomes through execute(): once their labels are due, once each, on the logged answers."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from helpers import task_context
from labelled_predictions import LABEL_DELAY_DAYS, RUN_DAY, record_release, register_version, write_performance_spec, write_release_traffic

from mlops_airflow.operators.release_outcomes import ReleaseOutcomeError, ReleaseOutcomeOperator, labels_due_on, paired_answers, release_period

DAY = RUN_DAY - dt.timedelta(days=LABEL_DELAY_DAYS)  # the last day whose labels are due on RUN_DAY


def outcome_of(tracking_uri: str, version: str) -> dict | None:
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(tracking_uri, tracking_uri).get_model_version("churn", version).tags
    return json.loads(tags["mlops.release.outcome"]) if "mlops.release.outcome" in tags else None


@pytest.fixture
def judge(tmp_path, mlflow_store):
    def run(run_day: dt.date = RUN_DAY, **performance):
        spec_path = write_performance_spec(tmp_path, tmp_path / "data", min_labelled_rows=300, **performance)
        operator = ReleaseOutcomeOperator(task_id="judge_release_outcomes", spec_path=spec_path, run_day=str(run_day))
        return operator.execute(task_context(dag_id="performance_monitor_churn", task_id="judge_release_outcomes"))

    return run


def test_an_ab_test_and_a_shadow_replay_are_judged_once_when_their_labels_are_due(tmp_path, mlflow_store, judge, statsd):
    old, ab_version, shadow_version = register_version(mlflow_store), register_version(mlflow_store), register_version(mlflow_store)
    record_release(mlflow_store, ab_version, "ab", write_release_traffic(tmp_path / "data", "ab", day=DAY, new=ab_version, old=old))
    shadow = write_release_traffic(tmp_path / "data", "shadow", day=DAY, new=shadow_version, old=old, new_noise=2.0, old_noise=0.0, seed=31, hour=14)
    record_release(mlflow_store, shadow_version, "shadow", shadow)

    with pytest.raises(AirflowSkipException, match="no A/B test or shadow replay awaits its outcomes"):
        judge(RUN_DAY - dt.timedelta(days=1))  # the labels of DAY are not all due yet
    judged = judge()

    assert [(o["strategy"], o["new_version"], o["old_version"], o["verdict"]) for o in judged] == [
        ("ab", ab_version, old, "Successful"),  # the new version answered its half of the clients far better
        ("shadow", shadow_version, old, "Failed"),  # the shadow's answers to the same requests were worse
    ]
    assert (judged[0]["new_rows"], judged[0]["old_rows"]) == (700, 700)
    assert judged[1]["new_rows"] == 1400  # every request paired with its replay, every row labelled
    assert judged[0]["lower"] > 0 > judged[1]["upper"]
    assert outcome_of(mlflow_store, ab_version)["judged_on"] == str(RUN_DAY)
    assert outcome_of(mlflow_store, shadow_version)["verdict"] == "Failed"
    assert outcome_of(mlflow_store, old) is None
    assert {"mlops.release_outcome.churn.ab.successful", "mlops.release_outcome.churn.shadow.failed"} <= {line.split(":", 1)[0] for line in statsd.drain()}
    # Judged once: the next day finds nothing new.
    with pytest.raises(AirflowSkipException):
        judge(RUN_DAY + dt.timedelta(days=1))


def test_too_few_labelled_answers_are_recorded_inconclusive_and_a_record_that_cannot_be_judged_is_marked_once(tmp_path, mlflow_store, judge):
    old, new = register_version(mlflow_store), register_version(mlflow_store)
    record_release(mlflow_store, new, "ab", write_release_traffic(tmp_path / "data", "ab", day=DAY, new=new, old=old, rows=400))
    (judged,) = judge()
    assert (judged["verdict"], judged["reasons"]) == ("Inconclusive", [f"200 labelled answers of v{new} and 200 of v{old}; a verdict needs 300 of each"])

    # A shadow replay recorded before releases noted their times (an upgrade): marked, not an error, never read again.
    older = register_version(mlflow_store)
    record_release(mlflow_store, older, "shadow", {"live_version": old, "verdict": "Successful"})
    with pytest.raises(AirflowSkipException):
        judge()
    assert outcome_of(mlflow_store, older)["verdict"] == "Unjudgeable"
    # A record broken by hand: marked too, and the task fails once, naming it, after judging the others.
    broken, fine = register_version(mlflow_store), register_version(mlflow_store)
    record_release(mlflow_store, broken, "shadow", {"window_start": "yesterday", "window_end": "x", "replayed_until": "y", "live_version": old})
    record_release(mlflow_store, fine, "ab", write_release_traffic(tmp_path / "data", "ab", day=DAY, new=fine, old=old, rows=400, seed=41, hour=16))
    with pytest.raises(AirflowFailException, match=rf"churn v{broken}: mlops.release.shadow cannot be read: .*window_start"):
        judge()
    assert outcome_of(mlflow_store, broken)["verdict"] == "Unjudgeable"
    assert outcome_of(mlflow_store, fine)["verdict"] == "Inconclusive"
    with pytest.raises(AirflowSkipException):
        judge()


def test_the_period_of_each_strategy_and_when_its_labels_are_due():
    ab = {"started": "2026-03-01T10:00:00+00:00", "ended": "2026-03-01T10:30:00+00:00"}
    assert release_period("ab", ab, "mlops.release.ab")[2] == dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC)
    shadow = {"window_start": "2026-03-01T09:00:00+00:00", "window_end": "2026-03-01T10:00:00+00:00", "replayed_until": "2026-03-01T10:05:00+00:00"}
    assert release_period("shadow", shadow, "mlops.release.shadow")[2] == dt.datetime(2026, 3, 1, 10, 5, tzinfo=dt.UTC)
    with pytest.raises(ReleaseOutcomeError, match=r"mlops.release.ab has no times \['started', 'ended', 'ended'\]"):
        release_period("ab", {"started": "yesterday"}, "mlops.release.ab")
    # A time without a zone (a tag set by hand) is UTC.
    naive = {"started": "2026-03-01T10:00:00", "ended": "2026-03-01T10:30:00"}
    assert release_period("ab", naive, "mlops.release.ab")[0] == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    assert labels_due_on(dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.UTC), 3) == dt.date(2026, 3, 4)


def test_each_live_answer_pairs_with_the_newest_replay_of_its_row():
    import pandas as pd

    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    live = pd.DataFrame({"request_id": ["a", "a", "b"], "row": [0, 1, 0], "score": [0.1, 0.2, 0.3], "ts": [at] * 3})
    replays = pd.DataFrame(
        {
            "request_id": ["replay-a", "replay-a", "replay-a", "b", "replay-c"],
            "row": [0, 1, 0, 0, 0],
            "score": [0.5, 0.6, 0.7, 0.8, 0.9],
            "ts": [at, at, at + dt.timedelta(seconds=1), at, at],
        }
    )
    pairs = paired_answers(live, replays)
    # a/0 was replayed twice (the newer answer counts); b was answered on the preview URL but not as a replay; c was never live.
    assert pairs[["request_id", "row", "score", "shadow_score"]].values.tolist() == [["a", 0, 0.1, 0.7], ["a", 1, 0.2, 0.6]]
