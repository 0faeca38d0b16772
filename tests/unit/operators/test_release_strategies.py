"""Canary steps, shadow replay and the decision on an inconclusive analysis, against an in-memory backend and log."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from helpers import REPO_ROOT, task_context

from mlops_airflow.core.payloads import Release
from mlops_airflow.operators import release_strategies
from mlops_airflow.operators.release_strategies import CanaryReleaseOperator, ReleaseDecisionOperator, ShadowReplayOperator
from mlops_airflow.serving.base import Color, ColorState, ServingStatus

RELEASE = Release(action="deployed", color="green", version="2", run_id="r", previous_color="blue", previous_version="1")


def spec(strategy: str = "canary"):
    from mlops_airflow.specs import parse_spec

    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    raw["serving"]["release"] = {
        "strategy": strategy,
        "canary": {"steps": [10, 50], "step_seconds": 1, "min_requests": 5},
        "shadow": {"min_requests": 2},
        "ab": {"duration_minutes": 0.01, "min_requests": 5},
    }
    return parse_spec(raw, source="churn.yaml")


class SplitBackend:
    def __init__(self, live=Color.BLUE):
        self.live, self.weights, self.calls = live, {}, []

    def status(self):
        colors = {c: ColorState(c, {"blue": "1", "green": "2"}[c], True, 1) for c in Color}
        return ServingStatus(self.live, colors, dict(self.weights))

    def set_weights(self, weights, *, sticky_cookie=None):
        self.calls.append(("set_weights", dict(weights)))
        self.weights, self.sticky = dict(weights), sticky_cookie

    def switch(self, color):
        self.calls.append(("switch", color))
        self.live, self.weights = color, {}

    def preview_url(self, color):
        return f"http://127.0.0.1:1/{color}"


class Tags:
    def __init__(self):
        self.tags = {}

    def set_version_tags(self, name, version, tags):
        self.tags.update(tags)

    def get_model_version(self, name, version):
        return version

    def get_lock_secret(self):
        return "s"


def log_rows(color: str, version: str, count: int, *, status: int = 200, latency: float = 5.0) -> list[dict]:
    body = json.dumps({"predictions": [[0.5, 0.5]]}).encode()
    row = {"model": "churn", "color": color, "version": version, "status": status, "latency_ms": latency, "response": body, "route": "live"}
    return [dict(row) for _ in range(count)]


@pytest.fixture
def canary(monkeypatch):
    """(run, backend, tags, logs): ``logs`` is the list of frames the steps read, one per step."""
    import mlops_airflow.hooks.model_versions as model_versions

    monkeypatch.setattr(model_versions, "require_promoted", lambda *a, **k: None)
    monkeypatch.setattr(release_strategies.time, "sleep", lambda seconds: None)
    backend, tags, logs = SplitBackend(), Tags(), []
    monkeypatch.setattr(release_strategies, "read_live_log", lambda spec, start, end, columns=None: pd.DataFrame(logs.pop(0)))

    def run(operator_class=CanaryReleaseOperator, release=RELEASE, strategy="canary"):
        operator = operator_class(task_id="t", spec_path="churn.yaml")
        operator.spec_hook_and_backend = lambda: (spec(strategy), tags, backend)
        return operator.execute(task_context({"deploy_idle_color": release.to_xcom()}))

    return run, backend, tags, logs


class TestCanaryReleaseOperator:
    def test_every_step_successful_leaves_the_last_split_for_the_switch(self, canary):
        run, backend, tags, logs = canary
        logs += [log_rows("blue", "1", 90) + log_rows("green", "2", 10), log_rows("blue", "1", 50) + log_rows("green", "2", 50)]
        result = run()
        assert result["verdict"] == "Successful"
        assert [s["weight"] for s in result["steps"]] == [10, 50]
        assert backend.calls == [("set_weights", {Color.BLUE: 90, Color.GREEN: 10}), ("set_weights", {Color.BLUE: 50, Color.GREEN: 50})]
        assert tags.tags["mlops.release.strategy"] == "canary"
        assert tags.tags["mlops.release.verdict"] == "Successful"
        record = json.loads(tags.tags["mlops.release.canary"])
        assert record["try"] == 1
        assert [step["requests"] for step in record["steps"]] == [10, 50]

    def test_a_failed_step_puts_all_traffic_back_and_fails_without_going_on(self, canary):
        run, backend, tags, logs = canary
        logs += [log_rows("blue", "1", 90) + log_rows("green", "2", 10, status=500)]
        with pytest.raises(AirflowFailException, match=r"failed at step 1 \(10%\): error rate 10/10.*back on blue"):
            run()
        assert backend.calls == [("set_weights", {Color.BLUE: 90, Color.GREEN: 10}), ("switch", Color.BLUE)]
        assert "mlops.release.canary.step_2" not in tags.tags
        assert tags.tags["mlops.release.verdict"] == "Failed"

    def test_an_inconclusive_step_keeps_the_split_and_hands_over_to_a_person(self, canary):
        run, backend, _, logs = canary
        logs += [log_rows("blue", "1", 90) + log_rows("green", "2", 2)]
        result = run()
        assert result["verdict"] == "Inconclusive"
        assert "2 answers" in result["reasons"][0]
        assert backend.calls == [("set_weights", {Color.BLUE: 90, Color.GREEN: 10})]

    def test_an_interrupted_canary_leaves_no_split(self, canary, monkeypatch):
        run, backend, _, logs = canary
        monkeypatch.setattr(release_strategies, "read_live_log", lambda spec, start, end, columns=None: (_ for _ in ()).throw(OSError("log unreadable")))
        with pytest.raises(OSError, match="log unreadable"):
            run()
        assert backend.calls[-1] == ("switch", Color.BLUE)

    def test_requests_the_new_colour_turns_down_count_as_errors(self, canary):
        run, _, _, logs = canary
        logs += [log_rows("blue", "1", 90) + log_rows("green", "2", 10, status=400)]
        with pytest.raises(AirflowFailException, match="error rate 10/10"):
            run()

    def test_answers_of_another_version_on_the_same_colour_do_not_count(self, canary):
        run, _, _, logs = canary
        logs += [log_rows("blue", "1", 90) + log_rows("green", "7", 10, status=500) + log_rows("green", "2", 10)]
        logs += [log_rows("blue", "1", 50) + log_rows("green", "2", 50)]
        assert run()["verdict"] == "Successful"

    @pytest.mark.parametrize(
        "release",
        [
            pytest.param(Release(action="already_live", color="green", version="2", run_id="r"), id="already-live"),
            pytest.param(Release(action="deployed", color="blue", version="1", run_id="r"), id="first-release"),
        ],
    )
    def test_nothing_to_compare_with_is_no_canary(self, canary, release):
        run, backend, _, _ = canary
        assert run(release=release)["steps"] == []
        assert backend.calls == []


class TestShadowReplayOperator:
    def test_nothing_logged_is_inconclusive(self, canary):
        run, backend, tags, logs = canary
        logs.append(pd.DataFrame(columns=["model", "color", "version", "status", "latency_ms", "response", "route", "ts", "request", "content_type"]))
        result = run(ShadowReplayOperator, strategy="shadow")
        assert result["verdict"] == "Inconclusive"
        assert result["logged"] == result["replayed"] == 0
        assert backend.calls == []
        assert json.loads(tags.tags["mlops.release.shadow"])["verdict"] == "Inconclusive"


class TestReleaseDecisionOperator:
    def operator(self):
        return ReleaseDecisionOperator(task_id="decide_release", spec_path="churn.yaml", analysis_task_id="canary_release")

    def test_nothing_to_decide_skips(self):
        context = task_context({"canary_release": {"verdict": "Successful"}, "deploy_idle_color": RELEASE.to_xcom()})
        with pytest.raises(AirflowSkipException, match="nothing to decide"):
            self.operator().execute(context)

    @pytest.mark.parametrize("analysis", [None, {}, {"verdict": "Failed"}])
    def test_no_verdict_on_record_never_lets_the_switch_run(self, analysis):
        context = task_context({"canary_release": analysis, "deploy_idle_color": RELEASE.to_xcom()})
        with pytest.raises(AirflowFailException, match="left no verdict"):
            self.operator().execute(context)

    def test_a_rejection_fails_so_that_the_rollback_runs(self, monkeypatch):
        from airflow.providers.standard.operators.hitl import HITLOperator

        from mlops_airflow.hooks import mlflow as mlflow_hook

        recorded = Tags()
        monkeypatch.setattr(HITLOperator, "execute_complete", lambda self, context, event: {"chosen_options": ["Reject"], "responded_by_user": {"name": "bob"}})
        monkeypatch.setattr(mlflow_hook, "MlflowHook", lambda *a, **k: recorded)
        monkeypatch.setattr("mlops_airflow.utils.task_args.load_task_spec", lambda path: spec())
        context = task_context({"deploy_idle_color": RELEASE.to_xcom()})
        with pytest.raises(AirflowFailException, match="release of v2 rejected by bob"):
            self.operator().execute_complete(context, {})
        assert json.loads(recorded.tags["mlops.release.decision"]) == {"approved": False, "by": "bob", "timed_out": False}


class TestABTestOperator:
    def test_a_healthy_test_holds_the_sticky_split_and_asks_a_person_with_the_observed_split(self, canary):
        run, backend, tags, logs = canary
        logs += [log_rows("blue", "1", 160) + log_rows("green", "2", 40)]
        report = run(release_strategies.ABTestOperator, strategy="ab")
        assert report["verdict"] == "Inconclusive"
        assert "needs the outcomes (labels)" in report["reasons"][-1]
        assert (report["configured_percent"], report["observed_share"]) == (50, 0.2)
        assert backend.calls == [("set_weights", {Color.BLUE: 50, Color.GREEN: 50})]
        assert backend.sticky == "mlops_variant_v2", "each release's test has its own cookie: no group carries over"
        assert tags.tags["mlops.release.strategy"] == "ab"
        assert json.loads(tags.tags["mlops.release.ab"])["observed_share"] == 0.2

    def test_an_unhealthy_new_version_fails_and_all_traffic_goes_back(self, canary):
        run, backend, _, logs = canary
        logs += [log_rows("blue", "1", 100) + log_rows("green", "2", 100, status=500)]
        with pytest.raises(AirflowFailException, match="A/B test of churn v2 failed.*back on blue"):
            run(release_strategies.ABTestOperator, strategy="ab")
        assert backend.calls[-1] == ("switch", Color.BLUE)

    def test_a_long_test_is_deferred_holding_no_worker_slot(self, canary, monkeypatch):
        from airflow.sdk.exceptions import TaskDeferred

        run, backend, _, _ = canary
        monkeypatch.setattr(release_strategies, "MIN_DEFERRED_TEST", dt.timedelta(seconds=0))
        with pytest.raises(TaskDeferred) as deferred:
            run(release_strategies.ABTestOperator, strategy="ab")
        assert deferred.value.method_name == "execute_complete"
        assert "started" in deferred.value.kwargs
        assert backend.weights == {Color.BLUE: 50, Color.GREEN: 50}

    def test_a_split_undone_during_the_test_is_named_to_the_person(self, canary):
        run, _, _, logs = canary
        logs += [log_rows("blue", "1", 195) + log_rows("green", "2", 5)]
        report = run(release_strategies.ABTestOperator, strategy="ab")
        assert report["verdict"] == "Inconclusive"
        assert any("not the 50% configured" in reason for reason in report["reasons"])

    def test_a_wait_that_ends_in_an_error_undoes_the_split(self, canary):
        from airflow.sdk.exceptions import TaskDeferralError

        _, backend, tags, _ = canary
        operator = release_strategies.ABTestOperator(task_id="ab_test", spec_path="churn.yaml")
        operator.spec_hook_and_backend = lambda: (spec("ab"), tags, backend)
        context = task_context({"deploy_idle_color": RELEASE.to_xcom()})
        with pytest.raises(TaskDeferralError):
            operator.resume_execution("__fail__", {"error": "the triggerer died"}, context)
        assert backend.calls == [("switch", Color.BLUE)]

    def test_a_fault_while_judging_undoes_the_split(self, canary, monkeypatch):
        _, backend, tags, _ = canary
        monkeypatch.setattr(release_strategies, "read_live_log", lambda *a, **k: (_ for _ in ()).throw(OSError("log unreadable")))
        operator = release_strategies.ABTestOperator(task_id="ab_test", spec_path="churn.yaml")
        operator.spec_hook_and_backend = lambda: (spec("ab"), tags, backend)
        with pytest.raises(OSError, match="log unreadable"):
            operator.execute_complete(task_context({"deploy_idle_color": RELEASE.to_xcom()}), started="2026-03-02T00:00:00+00:00")
        assert backend.calls == [("switch", Color.BLUE)]
