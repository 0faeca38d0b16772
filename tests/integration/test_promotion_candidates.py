"""Promotion against a real MLflow registry: a table of bad candidates times seeds, and good ones.

Each seed gets its own data, store and champion. Every bad candidate must leave the
aliases exactly as they were, with the reason for the "no" named; a clearly better one
is promoted; an identical one does not pass a superiority gate.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import fake_models
import mlflow
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from helpers import alias_version, churn_spec_raw, fresh_mlflow_db, mark_promoted, task_context, write_spec
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from mlops_airflow.exceptions import TrackingServerUnavailableError
from mlops_airflow.operators.evaluation import EvaluateChallengerOperator
from mlops_airflow.operators.registry import PromoteChampionOperator

# Task code runs with Airflow's metadata database made unusable (the Task SDK rule).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_metadata_db")]

END = dt.date(2026, 4, 15)
DAYS = 14
VALIDATION_DAYS = 7
ROWS_PER_DAY = 300
SEEDS = (1, 2, 3)


class World:
    """One seed's data, MLflow store, spec and champion."""

    def __init__(self, root: Path, seed: int, monkeypatch):
        from mlops_airflow.core import estimators
        from mlops_airflow.embedded.synthetic import generate

        self.root, self.seed = root, seed
        # The doubles of fake_models are reviewed types here: the package loads them (skops, its own list).
        monkeypatch.setitem(
            estimators.TRUSTED_TYPES, "hist_gradient_boosting", (*estimators.TRUSTED_TYPES["hist_gradient_boosting"], *fake_models.TRUSTED_TYPES)
        )
        self.uri = fresh_mlflow_db(root / "mlflow.db")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.uri)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", self.uri)
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "extra": {"tracking_uri": self.uri}}))
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DOWN", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9}))
        monkeypatch.chdir(root)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client = MlflowClient(self.uri, self.uri)
        raw = churn_spec_raw()
        raw["data"]["uri"] = str(root / "data" / "events")
        raw["data"]["predictions_uri"] = str(root / "data" / "predictions")
        raw["training"].update(window_days=DAYS, validation_days=VALIDATION_DAYS)
        raw["promotion"].update(bootstrap_resamples=300, seed=seed)
        self.raw = raw
        self.spec_path = self.write_spec()
        from mlops_airflow.specs import load_spec

        self.spec = load_spec(self.spec_path)
        generate(self.spec.data.uri, END - dt.timedelta(days=DAYS), END, rows_per_day=ROWS_PER_DAY, seed=seed)
        self.x_fit, self.y_fit = self.fit_rows()
        self.champion_pipeline = self.fit({"max_iter": 100})
        self.champion = self.register(self.champion_pipeline)
        mark_promoted(self.client, "churn", self.champion)  # the record of the promotion that made it champion
        self.client.set_registered_model_alias("churn", "champion", self.champion)

    def write_spec(self, **promotion) -> str:
        raw = {**self.raw, "promotion": {**self.raw["promotion"], **promotion}}
        folder = self.root if not promotion else self.root / f"variant-{len(list(self.root.glob('variant-*')))}"
        folder.mkdir(parents=True, exist_ok=True)
        return str(write_spec(raw, folder))

    def fit_rows(self):
        from mlops_airflow.core.features import prepare_features
        from mlops_airflow.core.partitions import read_window

        frame = read_window(self.spec.data.uri, END - dt.timedelta(days=DAYS), END - dt.timedelta(days=VALIDATION_DAYS)).frame
        return prepare_features(frame, self.spec), frame["churned"].astype(int)

    def fit(self, params, x=None):
        from mlops_airflow.core.estimators import build_pipeline

        pipeline = build_pipeline(
            "hist_gradient_boosting", params, numeric=self.spec.features.numeric, categorical=self.spec.features.categorical, seed=self.seed
        )
        return pipeline.fit(self.x_fit if x is None else x, self.y_fit)

    def register(self, model, *, x=None) -> str:
        """Log a model in a run that records the fit window, as training does (skops), and register it."""
        import mlflow.sklearn

        from mlops_airflow.core.estimators import TRUSTED_TYPES

        example = (self.x_fit if x is None else x).head(5)
        with mlflow.start_run():
            mlflow.log_params({"window_start": str(END - dt.timedelta(days=DAYS)), "validation_start": str(END - dt.timedelta(days=VALIDATION_DAYS))})
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(example, model.predict_proba(example)),
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=list(TRUSTED_TYPES["hist_gradient_boosting"]),
                # Explicit requirements: inferring them loads the model in a subprocess (~10 s).
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
            )
        return str(mlflow.register_model(info.model_uri, "churn").version)

    def aliases(self) -> dict[str, str | None]:
        return {alias: alias_version(self.client, "churn", alias) for alias in ("champion", "previous_champion")}

    def promote(self, version: str, *, spec_path=None, conn_id="mlflow_default", **promote_kwargs):
        """Point challenger at ``version``, evaluate, promote. Returns the outcome and the message."""
        self.client.set_registered_model_alias("churn", "challenger", version)
        spec_path = spec_path or self.spec_path
        evaluate = EvaluateChallengerOperator(task_id="evaluate_challenger", spec_path=spec_path, window_end=str(END), mlflow_conn_id=conn_id)
        try:
            report = evaluate.execute(task_context())
        except (AirflowFailException, TrackingServerUnavailableError) as err:
            return type(err).__name__, str(err)
        promote = PromoteChampionOperator(task_id="promote_champion", spec_path=spec_path, window_end=str(END), mlflow_conn_id=conn_id, **promote_kwargs)
        try:
            result = promote.execute(task_context({"evaluate_challenger": report}, run_id=f"manual__v{version}"))
        except AirflowSkipException as skip:
            return "skipped", str(skip)
        return "promoted", json.dumps(result)


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def world(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield World(tmp_path_factory.mktemp(f"promotion-seed{request.param}"), request.param, monkeypatch)
        # MLflow keeps process-wide URIs besides the environment: leave none behind for later tests.
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def worse(world):
    return world.register(world.fit({"max_iter": 1, "max_depth": 1}))


def nan_metric(world):
    return world.register(fake_models.NanProbabilities())


def missing_class(world):
    return world.register(fake_models.OneColumn())


def signature_mismatch(world):
    renamed = world.x_fit.rename(columns={"tenure_months": "tenure"})
    from mlops_airflow.core.estimators import build_pipeline

    numeric = tuple("tenure" if c == "tenure_months" else c for c in world.spec.features.numeric)
    pipeline = build_pipeline("hist_gradient_boosting", {"max_iter": 20}, numeric=numeric, categorical=world.spec.features.categorical, seed=1)
    return world.register(pipeline.fit(renamed, world.y_fit), x=renamed)


def segment_regression(world):
    return world.register(fake_models.SegmentSaboteur(world.champion_pipeline, "contract", "two-year"))


def better_everywhere_but_broken_tracking(world):
    return world.register(world.fit({"max_iter": 100}))


BAD = [
    pytest.param(worse, "skipped", "non-inferiority roc_auc", {}, id="worse-model"),
    pytest.param(nan_metric, "AirflowFailException", "NaN or infinite probabilities", {}, id="nan-metric"),
    pytest.param(missing_class, "AirflowFailException", "one probability per class", {}, id="missing-metric"),
    pytest.param(signature_mismatch, "AirflowFailException", "expects columns ['tenure']", {}, id="signature-mismatch"),
    pytest.param(segment_regression, "skipped", "segment contract=two-year", {}, id="segment-regresses"),
    pytest.param(
        better_everywhere_but_broken_tracking, "TrackingServerUnavailableError", "cannot reach MLflow", {"conn_id": "mlflow_down"}, id="tracking-down"
    ),
]


@pytest.mark.parametrize(("make", "outcome", "reason", "kwargs"), BAD)
def test_bad_candidate_is_not_promoted(world, make, outcome, reason, kwargs):
    before = world.aliases()
    version = make(world)
    got, message = world.promote(version, **kwargs)
    assert (got, reason in message) == (outcome, True), message
    assert world.aliases() == before == {"champion": world.champion, "previous_champion": None}
    tags = world.client.get_model_version("churn", version).tags
    assert tags.get("mlops.decision") != "promoted"
    if outcome == "skipped":
        assert tags["mlops.decision"] == "rejected"
        assert reason in tags["mlops.decision.reasons"]
    elif outcome == "AirflowFailException":
        assert tags["mlops.decision"] == "invalid"


def test_clearly_better_candidate_is_promoted(world, statsd):
    stump = world.register(world.fit({"max_iter": 1, "max_depth": 1}))
    world.client.set_registered_model_alias("churn", "champion", stump)
    try:
        good = world.register(world.fit({"max_iter": 100}))
        got, message = world.promote(good)
        assert got == "promoted", message
        assert world.aliases() == {"champion": good, "previous_champion": stump}
        tags = world.client.get_model_version("churn", good).tags
        assert (tags["mlops.decision"], tags["mlops.decision.previous_champion"], tags["mlops.decision.compared_with"]) == ("promoted", stump, stump)
        assert "non-inferiority roc_auc=pass" in tags["mlops.decision.gates"]
        sent = statsd(3)
        assert sent[2] == "mlops.promotion.churn.promoted:1|c"
        assert [m.split(":")[0] for m in sent[:2]] == ["mlops.promotion.churn.challenger.roc_auc", "mlops.promotion.churn.champion.roc_auc"]
    finally:
        world.client.set_registered_model_alias("churn", "champion", world.champion)
        world.client.delete_registered_model_alias("churn", "previous_champion")


def test_identical_model_does_not_pass_superiority(world, statsd):
    champion = world.client.get_model_version("churn", world.champion)
    twin = str(world.client.create_model_version("churn", source=champion.source, run_id=champion.run_id).version)
    got, message = world.promote(twin, spec_path=world.write_spec(comparison="superiority", margin=0.0))
    assert got == "skipped"
    assert "superiority roc_auc: improvement +0.0000, 95% lower bound +0.0000 <= +0.0000" in message
    assert "mlops.promotion.churn.rejected:1|c" in statsd(3)
    assert world.aliases() == {"champion": world.champion, "previous_champion": None}


def test_force_promote_overrides_the_gates_and_records_who_and_why(world):
    version = worse(world)
    try:
        got, _ = world.promote(version, force_promote="True", reason="hotfix for incident 42")
        assert got == "promoted"
        tags = world.client.get_model_version("churn", version).tags
        assert (tags["mlops.decision"], tags["mlops.decision.forced"], tags["mlops.decision.by"]) == ("promoted", "true", "alice")
        assert tags["mlops.decision.reasons"].startswith("forced by alice: hotfix for incident 42; overridden: ")
        assert "overridden: non-inferiority roc_auc" in tags["mlops.decision.reasons"]
    finally:
        world.client.set_registered_model_alias("churn", "champion", world.champion)
        world.client.delete_registered_model_alias("churn", "previous_champion")


def test_force_promote_without_a_reason_fails(world):
    version = worse(world)
    with pytest.raises(AirflowFailException, match="force_promote needs a reason"):
        world.promote(version, force_promote=True, reason="  ")
    assert world.aliases() == {"champion": world.champion, "previous_champion": None}


def test_champion_that_moved_since_evaluation_fails_then_the_retry_re_evaluates(world):
    version = world.register(world.fit({"max_iter": 100}))
    world.client.set_registered_model_alias("churn", "challenger", version)
    report = EvaluateChallengerOperator(task_id="e", spec_path=world.spec_path, window_end=str(END)).execute(task_context())
    # Meanwhile a rollback (or another deployment) moves the champion to a stump.
    stump = world.register(world.fit({"max_iter": 1, "max_depth": 1}))
    world.client.set_registered_model_alias("churn", "champion", stump)
    promote = PromoteChampionOperator(task_id="promote_champion", spec_path=world.spec_path, window_end=str(END))
    try:
        from mlops_airflow.operators.registry import ChampionChangedError

        with pytest.raises(ChampionChangedError, match=f"moved from v{world.champion} to v{stump} after the evaluation; the retry re-evaluates"):
            promote.execute(task_context({"evaluate_challenger": report}))
        assert world.aliases() == {"champion": stump, "previous_champion": None}
        result = promote.execute(task_context({"evaluate_challenger": report}, try_number=2))
        assert result["previous_champion"] == stump
        assert world.aliases() == {"champion": version, "previous_champion": stump}
        assert world.client.get_model_version("churn", version).tags["mlops.decision.compared_with"] == stump
    finally:
        world.client.set_registered_model_alias("churn", "champion", world.champion)
        world.client.delete_registered_model_alias("churn", "previous_champion")


@pytest.mark.parametrize("failing", ["set_alias", "log_dict"])
def test_a_promotion_that_fails_half_way_is_undone(world, monkeypatch, failing):
    from mlops_airflow.exceptions import MlopsError
    from mlops_airflow.hooks.mlflow import MlflowHook

    previous = world.register(world.fit({"max_iter": 1, "max_depth": 1}))
    world.client.set_registered_model_alias("churn", "previous_champion", previous)
    version = world.register(world.fit({"max_iter": 100}))
    original = getattr(MlflowHook, failing)

    def fail_on_champion(self, *args):
        if failing == "log_dict" or args[1] == "champion":
            raise OSError("connection reset")
        return original(self, *args)

    monkeypatch.setattr(MlflowHook, failing, fail_on_champion)
    try:
        with pytest.raises(MlopsError, match="connection reset"):
            world.promote(version)
        # previous_champion had already moved to the champion: both are back where they were.
        assert world.aliases() == {"champion": world.champion, "previous_champion": previous}
        tags = world.client.get_model_version("churn", version).tags
        assert tags["mlops.decision"] == "failed"
        assert "alias move undone" in tags["mlops.decision.reasons"]
    finally:
        world.client.delete_registered_model_alias("churn", "previous_champion")


@pytest.mark.parametrize("world", [SEEDS[0]], ids=[f"seed{SEEDS[0]}"], indirect=True)  # nothing here depends on the data's seed
def test_scoring_rollback_and_the_partition_sensor_need_no_metadata_db(world):
    """The operators the table above does not run: a scored day, a manual rollback, a partition wait."""
    import pandas as pd

    from mlops_airflow.operators.registry import RestorePreviousChampionOperator
    from mlops_airflow.operators.scoring import BatchScoreOperator
    from mlops_airflow.sensors.partitions import PartitionSensor

    day = END - dt.timedelta(days=1)
    assert PartitionSensor(task_id="wait", base_uri=world.spec.data.uri, start=str(day)).poke(task_context()) is True
    scored = BatchScoreOperator(task_id="score", spec_path=world.spec_path, partition_date=str(day)).execute(task_context())
    assert scored["rows"] == ROWS_PER_DAY
    assert len(pd.read_parquet(f"{world.spec.data.predictions_uri}/dt={day}/predictions.parquet")) == ROWS_PER_DAY
    previous = world.register(world.fit({"max_iter": 1, "max_depth": 1}))
    world.client.set_registered_model_alias("churn", "previous_champion", previous)
    try:
        RestorePreviousChampionOperator(task_id="restore", registered_model_name="churn").execute(task_context())
        assert world.aliases() == {"champion": previous, "previous_champion": world.champion}
    finally:
        world.client.set_registered_model_alias("churn", "champion", world.champion)
        world.client.delete_registered_model_alias("churn", "previous_champion")


def hitl(option: str | None, user: str | None = "bob", *, received: bool = True) -> dict:
    """A human-in-the-loop record as ``GET .../hitlDetails`` answers it; ``user=None``: the timeout's default."""
    return {
        "response_received": received,
        "chosen_options": [option] if option else None,
        "responded_by_user": {"id": user, "name": user} if user else None,
        "responded_at": "2026-04-15T10:00:00Z" if received else None,
    }


FORGED_APPROVAL = {"required": True, "approved": True, "by": "mallory", "at": "2026-04-15T10:00:00Z", "timed_out": False}
APPROVAL_CASES = [
    # (what Airflow's record holds, approval XCom, four_eyes, outcome, reason)
    pytest.param(None, None, False, "skipped", "no answer is recorded", id="task-marked-success-no-record"),
    pytest.param(hitl(None, None, received=False), None, False, "skipped", "no answer is recorded", id="asked-never-answered"),
    pytest.param(None, FORGED_APPROVAL, False, "skipped", "no answer is recorded", id="forged-approval-xcom"),
    pytest.param(None, {"required": False}, False, "skipped", "no answer is recorded", id="forged-not-required-xcom"),
    pytest.param(hitl("Reject", None), None, False, "skipped", "no approval before the timeout", id="timeout-default"),
    pytest.param(hitl("Reject", "bob"), FORGED_APPROVAL, False, "skipped", "approval rejected by bob", id="rejected"),
    pytest.param(hitl("Approve", "alice"), None, True, "skipped", "four-eyes rule: alice approved a run they triggered", id="four-eyes-own-run"),
    pytest.param(
        hitl("Approve", "bob") | {"subject": "Promote churn v1 to champion?"},
        None,
        False,
        "skipped",
        "bob answered 'Promote churn v1 to champion?'",
        id="approval-of-another-version",
    ),
    pytest.param(hitl("Approve", "bob"), None, True, "promoted", "approved by bob at 2026-04-15T10:00:00Z", id="approved-by-another"),
]


@pytest.mark.parametrize("world", [SEEDS[0]], ids=[f"seed{SEEDS[0]}"], indirect=True)  # nothing here depends on the data's seed
def test_a_required_approval_is_read_from_airflows_record_never_from_an_xcom(world, monkeypatch):
    """Issue: an approval task marked success (or a forged XCom) was read as "approval not required"."""
    from fake_airflow_api import FakeAirflowApi

    better = world.register(world.fit({"max_iter": 100}))
    world.client.set_registered_model_alias("churn", "challenger", better)
    report = EvaluateChallengerOperator(task_id="evaluate_challenger", spec_path=world.spec_path, window_end=str(END)).execute(task_context())
    assert report["recommendation"] == "promote", report["reasons"]
    with FakeAirflowApi() as api:
        monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api.connection())
        for n, case in enumerate(APPROVAL_CASES):
            record, xcom, four_eyes, outcome, reason = case.values
            run_id = f"manual__approval{n}"
            api.hitl.clear()
            if record is not None:
                # What the approval task asked: this version, unless the case says otherwise.
                api.hitl[("retrain_churn", run_id, "approve_promotion")] = {"subject": f"Promote churn v{better} to champion?"} | record
            promote = PromoteChampionOperator(
                task_id="promote_champion", spec_path=world.spec_path, window_end=str(END), require_approval="True", four_eyes=four_eyes
            )
            xcoms = {"evaluate_challenger": report} | ({"approve_promotion": xcom} if xcom else {})
            try:
                try:
                    promote.execute(task_context(xcoms, run_id=run_id, user="alice"))
                    got = "promoted"
                except AirflowSkipException:
                    got = "skipped"
                tags = world.client.get_model_version("churn", better).tags
                assert (case.id, got, reason in tags["mlops.decision.reasons"]) == (case.id, outcome, True), tags["mlops.decision.reasons"]
                expected = (
                    {"champion": better, "previous_champion": world.champion}
                    if outcome == "promoted"
                    else {"champion": world.champion, "previous_champion": None}
                )
                assert world.aliases() == expected, case.id
                if outcome == "promoted":
                    assert tags["mlops.decision.by"] == "bob"
            finally:
                world.client.set_registered_model_alias("churn", "champion", world.champion)
                world.client.delete_registered_model_alias("churn", "previous_champion") if world.aliases()["previous_champion"] else None
        # Each record was read for its own run and task.
        asked = [r["path"] for r in api.requests if r["method"] == "GET"]
        assert asked[0] == "/api/v2/dags/retrain_churn/dagRuns/manual__approval0/taskInstances/approve_promotion/-1/hitlDetails"
        assert len(asked) == len(APPROVAL_CASES)


@pytest.mark.parametrize("world", [SEEDS[0]], ids=[f"seed{SEEDS[0]}"], indirect=True)
def test_an_approval_that_cannot_be_read_moves_nothing_and_is_retried(world, monkeypatch):
    from mlops_airflow.exceptions import MlopsError

    better = world.register(world.fit({"max_iter": 100}))
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "login": "a", "password": "b"}))
    with pytest.raises(MlopsError, match="cannot read the approval record of 'approve_promotion' through connection 'airflow_api'"):
        world.promote(better, require_approval="True")
    assert world.aliases() == {"champion": world.champion, "previous_champion": None}
