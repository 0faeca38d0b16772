"""The payloads tasks hand each other: a JSON round trip, and a clear refusal of any other shape."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_airflow.constants import Recommendation
from mlops_airflow.core.payloads import (
    Approval,
    DriftSummary,
    EvaluationReport,
    FeatureDrift,
    PayloadError,
    Release,
    ScoredVersion,
    TrainingResult,
)

TRAINED = TrainingResult(
    run_id="r1",
    model_uri="models:/churn/3",
    version="3",
    registered_model_name="churn",
    window_start="2026-01-01",
    window_end="2026-02-01",
    metrics={"roc_auc": 0.8},
)
REPORT = EvaluationReport(
    registered_model_name="churn",
    primary_metric="roc_auc",
    window_start="2026-02-22",
    window_end="2026-03-01",
    rows=2100,
    challenger=ScoredVersion("3", "r3", {"roc_auc": 0.81}),
    champion=ScoredVersion("2", "r2", {"roc_auc": 0.80}),
    bootstrap={"lower": 0.001, "upper": 0.02, "resamples": 200},
    segments=({"column": "contract", "value": "monthly", "rows": 900, "skipped": None},),
    gates=({"name": "non-inferiority roc_auc", "passed": True, "detail": "ok"},),
    recommendation=Recommendation.PROMOTE,
    reasons=("all gates passed",),
)
DRIFT = DriftSummary(
    model="churn",
    champion_version="2",
    window_start=dt.date(2026, 2, 27),
    window_end=dt.date(2026, 3, 1),
    onset=dt.date(2026, 2, 26),
    rows=1200,
    drifted_features=("monthly_charges",),
    retrain_run_id="drift__2026-02-26__2026-03-01",
    features={"monthly_charges": FeatureDrift("ks", 0.3, 0.3, 1e-9, 1e-8, "drift")},
    thresholds={"alpha": 0.01, "min_effect": 0.1, "min_samples": 100},
)
RELEASE = Release(action="deployed", color="green", version="3", run_id="r3", previous_color="blue", previous_version="2")
APPROVAL = Approval(
    required=True, approved=True, by="bob", at="2026-03-01T09:00:00+00:00", answered=True, option="Approve", subject="Promote churn v3 to champion?"
)
EVERY_PAYLOAD = [
    pytest.param(TRAINED, id="training-result"),
    pytest.param(REPORT, id="evaluation-report"),
    pytest.param(DRIFT, id="drift-summary"),
    pytest.param(RELEASE, id="release"),
    pytest.param(APPROVAL, id="approval"),
]


@pytest.mark.parametrize("payload", EVERY_PAYLOAD)
def test_a_payload_survives_xcom_as_json(payload):
    on_the_wire = json.loads(json.dumps(payload.to_xcom()))
    assert (on_the_wire["payload"], on_the_wire["payload_version"]) == (payload.KIND, 1)
    assert type(payload).from_xcom(on_the_wire) == payload
    assert type(payload).from_json(payload.to_json()) == payload


@pytest.mark.parametrize("payload", EVERY_PAYLOAD)
class TestRefusals:
    def test_another_payload_kind(self, payload):
        other = RELEASE if not isinstance(payload, Release) else TRAINED
        with pytest.raises(PayloadError, match=rf"^{payload.KIND}: the value is a '{other.KIND}' payload"):
            type(payload).from_xcom(other.to_xcom())

    def test_a_version_this_release_does_not_read(self, payload):
        with pytest.raises(PayloadError, match=rf"^{payload.KIND}: payload_version 7 is not one this release reads \(1\)"):
            type(payload).from_xcom({**payload.to_xcom(), "payload_version": 7})

    def test_a_missing_field(self, payload):
        value = payload.to_xcom()
        first_required = next(k for k in value if k not in ("payload", "payload_version"))
        del value[first_required]
        with pytest.raises(PayloadError, match=rf"^{payload.KIND}: missing '{first_required}'"):
            type(payload).from_xcom(value)

    @pytest.mark.parametrize("value", [None, "text", ["a list"]], ids=["none", "text", "list"])
    def test_not_an_object(self, payload, value):
        with pytest.raises(PayloadError, match=rf"^{payload.KIND}: expected a JSON object"):
            type(payload).from_xcom(value)

    def test_not_json(self, payload):
        with pytest.raises(PayloadError, match=rf"^{payload.KIND}: not JSON"):
            type(payload).from_json("{half")


class TestEvaluationReport:
    def test_the_recommendation_is_an_enum_and_says_whether_it_promotes(self):
        assert REPORT.promotes
        rejected = EvaluationReport.from_xcom({**REPORT.to_xcom(), "recommendation": "reject"})
        assert rejected.recommendation is Recommendation.REJECT
        assert not rejected.promotes

    def test_an_unknown_recommendation_is_refused(self):
        with pytest.raises(PayloadError, match=r"recommendation 'maybe' is not one of \['promote', 'reject'\]"):
            EvaluationReport.from_xcom({**REPORT.to_xcom(), "recommendation": "maybe"})

    def test_a_first_model_has_no_champion(self):
        first = EvaluationReport.from_xcom({**REPORT.to_xcom(), "champion": None})
        assert first.champion is None

    @pytest.mark.parametrize("challenger", [None, {"version": "3"}], ids=["none", "no-run-id"])
    def test_a_challenger_without_version_run_and_metrics_is_refused(self, challenger):
        with pytest.raises(PayloadError, match="challenger|scored version"):
            EvaluationReport.from_xcom({**REPORT.to_xcom(), "challenger": challenger})

    def test_already_champion_is_carried(self):
        assert EvaluationReport.from_xcom(REPORT.with_already_champion().to_xcom()).already_champion


class TestDriftSummary:
    def test_the_days_to_rescore_run_from_the_onset_to_the_windows_last_day(self):
        assert DRIFT.backfill_days == (dt.date(2026, 2, 26), dt.date(2026, 2, 28))
        assert "backfill_start" not in DRIFT.to_xcom()
        assert "backfill_end" not in DRIFT.to_xcom()

    def test_a_summary_written_before_payloads_were_versioned_still_reads(self):
        """A retrain queued before an upgrade carries the old drift Param: onset as backfill_start, and backfill_end."""
        old = {k: v for k, v in DRIFT.to_xcom().items() if k not in ("payload", "payload_version", "onset")}
        old |= {"onset": "2026-02-26", "backfill_start": "2026-02-26", "backfill_end": "2026-02-28"}
        read = DriftSummary.from_xcom(old)
        assert read.backfill_days == (dt.date(2026, 2, 26), dt.date(2026, 2, 28))
        assert read.drifted_features == DRIFT.drifted_features

    @pytest.mark.parametrize("field", ["window_start", "window_end", "onset"])
    def test_a_day_that_is_not_a_day_is_refused(self, field):
        with pytest.raises(PayloadError, match=rf"{field} 'soon' is not a day"):
            DriftSummary.from_xcom({**DRIFT.to_xcom(), field: "soon"})

    def test_a_malformed_feature_entry_is_refused(self):
        with pytest.raises(PayloadError, match="a feature's entry is malformed"):
            DriftSummary.from_xcom({**DRIFT.to_xcom(), "features": {"x": {"test": "ks"}}})


class TestApproval:
    def test_only_a_persons_answer_counts(self):
        answered = Approval.from_hitl(
            {"response_received": True, "responded_by_user": {"id": "7", "name": "bob"}, "chosen_options": ["Approve"], "responded_at": "t", "subject": "s"}
        )
        assert (answered.approved, answered.answered, answered.by, answered.given_by("7")) == (True, True, "bob", True)
        timed_out = Approval.from_hitl({"response_received": True, "responded_by_user": None, "chosen_options": ["Reject"]})
        assert (timed_out.timed_out, timed_out.approved, timed_out.answered) == (True, False, False)
        assert Approval.from_hitl(None) == Approval(required=True)


class TestWrittenBeforePayloadsWereVersioned:
    """A run in flight across an upgrade, or an older trainer image, hands over the unversioned shape."""

    def test_an_evaluation_report_with_decision_and_window(self):
        old = {k: v for k, v in REPORT.to_xcom().items() if k not in ("payload", "payload_version", "recommendation", "window_start", "window_end")}
        old |= {"decision": "promote", "window": {"start": "2026-02-22", "end": "2026-03-01"}}
        assert EvaluationReport.from_xcom(old) == REPORT

    @pytest.mark.parametrize("payload", [pytest.param(TRAINED, id="training-result"), pytest.param(RELEASE, id="release")])
    def test_the_same_fields_without_kind_and_version(self, payload):
        old = {k: v for k, v in payload.to_xcom().items() if k not in ("payload", "payload_version")}
        assert type(payload).from_xcom(old) == payload

    def test_a_versioned_summary_cannot_name_its_own_last_day(self):
        """Only the unversioned shape carried backfill_end; in a versioned one it would widen the re-scored days."""
        assert DriftSummary.from_xcom({**DRIFT.to_xcom(), "backfill_end": "2100-01-01"}).backfill_days == DRIFT.backfill_days


@pytest.mark.parametrize(
    ("payload", "change"),
    [
        pytest.param(REPORT, {"rows": "many"}, id="rows-not-a-number"),
        pytest.param(REPORT, {"reasons": None}, id="reasons-none"),
        pytest.param(TRAINED, {"metrics": ["roc_auc"]}, id="metrics-a-list"),
        pytest.param(DRIFT, {"drifted_features": 3}, id="features-a-number"),
        pytest.param(RELEASE, {"color": "purple"}, id="release-colour"),
        pytest.param(RELEASE, {"previous_color": "red"}, id="previous-colour"),
    ],
)
def test_a_field_of_the_wrong_shape_is_a_payload_error(payload, change):
    with pytest.raises(PayloadError, match=rf"^{payload.KIND}: "):
        type(payload).from_xcom({**payload.to_xcom(), **change})
