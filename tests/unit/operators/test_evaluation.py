"""EvaluateChallengerOperator: its templates, what it asks the evaluation for, and what it returns and sends.

The evaluation itself is replaced by a stand-in that returns a real EvaluationReport (registering
and scoring real versions costs ~30 s: tests/integration/test_promotion_candidates.py does it).
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException
from helpers import CHURN_SPEC, task_context

from mlops_airflow.constants import Recommendation
from mlops_airflow.core.payloads import EvaluationReport, ScoredVersion
from mlops_airflow.hooks.mlflow import MlflowHook
from mlops_airflow.operators import evaluation
from mlops_airflow.operators.evaluation import EvaluateChallengerOperator


def report(*, champion: bool = True) -> EvaluationReport:
    return EvaluationReport(
        registered_model_name="churn",
        primary_metric="roc_auc",
        window_start="2026-04-08",
        window_end="2026-04-15",
        rows=2100,
        challenger=ScoredVersion("7", "run-7", {"roc_auc": 0.8125, "accuracy": 0.75}),
        champion=ScoredVersion("6", "run-6", {"roc_auc": 0.75, "accuracy": 0.7}) if champion else None,
        bootstrap={"mean": 0.0625, "lower": 0.01, "upper": 0.1} if champion else None,
        segments=({"segment": "contract=one-year", "rows": 700, "challenger": 0.8, "champion": 0.74},),
        gates=({"name": "minimum roc_auc", "passed": True, "detail": "0.8125 >= 0.7000"},),
        recommendation=Recommendation.PROMOTE,
        reasons=("all gates passed",),
    )


@pytest.fixture
def evaluations(monkeypatch) -> SimpleNamespace:
    """The evaluation replaced: ``calls`` lists the arguments of each call, ``answer`` is what it returns."""
    evaluations = SimpleNamespace(calls=[], answer=report())

    def evaluate(hook, spec, window_end, *, expected_challenger=None):
        evaluations.calls.append({"hook": hook, "spec": spec, "window_end": window_end, "expected_challenger": expected_challenger})
        return evaluations.answer

    monkeypatch.setattr(evaluation, "evaluate_registered_versions", evaluate)
    return evaluations


def operator(**kwargs) -> EvaluateChallengerOperator:
    return EvaluateChallengerOperator(task_id="evaluate_challenger", **({"spec_path": str(CHURN_SPEC), "window_end": "2026-04-15"} | kwargs))


class TestEvaluateChallengerOperator:
    def test_templated_fields(self):
        assert EvaluateChallengerOperator.template_fields == ("spec_path", "window_end", "challenger_version")
        with DAG("templates", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
            task = operator(
                spec_path="{{ params.specs }}/churn.yaml",
                window_end="{{ params.window_end }}",
                challenger_version="{{ ti.xcom_pull(task_ids='train_model')['version'] }}",
                mlflow_conn_id="{{ params.conn }}",
            )
        context = task_context({"train_model": {"version": "7"}}, params={"specs": "/specs", "window_end": "2026-04-15", "conn": "other"})
        task.render_template_fields(context)
        assert (task.spec_path, task.window_end, task.challenger_version) == ("/specs/churn.yaml", "2026-04-15", "7")
        assert task.mlflow_conn_id == "{{ params.conn }}"  # not templated

    def test_returns_the_report_as_xcom_and_sends_both_primary_metrics(self, evaluations, statsd):
        result = operator().execute(task_context())
        assert result == evaluations.answer.to_xcom()
        assert EvaluationReport.from_xcom(result) == evaluations.answer
        assert statsd(2) == ["mlops.promotion.churn.challenger.roc_auc:0.8125|g", "mlops.promotion.churn.champion.roc_auc:0.75|g"]

    def test_without_a_champion_only_the_challengers_metric_is_sent(self, evaluations, statsd):
        evaluations.answer = report(champion=False)
        result = operator().execute(task_context())
        assert EvaluationReport.from_xcom(result).champion is None
        assert statsd.drain(quiet=0.3) == ["mlops.promotion.churn.challenger.roc_auc:0.8125|g"]

    def test_an_already_champion_report_round_trips(self, evaluations):
        evaluations.answer = report().with_already_champion()
        assert EvaluationReport.from_xcom(operator().execute(task_context())).already_champion is True

    @pytest.mark.parametrize(
        ("window_end", "challenger_version", "expected_challenger"),
        [
            pytest.param("2026-04-15", "7", "7", id="rendered-strings"),
            pytest.param(dt.date(2026, 4, 15), None, None, id="a-date-and-no-version"),
            pytest.param(" 2026-04-15 ", "", None, id="padded-date-and-empty-version"),
        ],
    )
    def test_what_the_evaluation_is_asked(self, evaluations, window_end, challenger_version, expected_challenger):
        operator(window_end=window_end, challenger_version=challenger_version, mlflow_conn_id="mlflow_eval").execute(task_context())
        [call] = evaluations.calls
        assert isinstance(call["hook"], MlflowHook)
        assert call["hook"].mlflow_conn_id == "mlflow_eval"
        assert (call["spec"].name, call["window_end"], call["expected_challenger"]) == ("churn", dt.date(2026, 4, 15), expected_challenger)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"window_end": "soon"}, r"window_end: expected a date \(YYYY-MM-DD\), got 'soon'", id="bad-window-end"),
            pytest.param({"spec_path": "/nowhere/churn.yaml"}, r"/nowhere/churn\.yaml: <file>: cannot be read", id="missing-spec"),
        ],
    )
    def test_bad_arguments_fail_without_retry_before_any_evaluation(self, evaluations, kwargs, match):
        with pytest.raises(AirflowFailException, match=match):
            operator(**kwargs).execute(task_context())
        assert evaluations.calls == []
