"""mlops_airflow.hooks.model_versions against an in-memory registry: what serves, how aliases go back, what evaluation refuses.

The registry is a stand-in for :class:`~mlops_airflow.hooks.mlflow.MlflowHook` that answers
with MLflow's own entities and records every call. Evaluations that are computed (models
loaded and scored) are in tests/integration/test_promotion_candidates.py.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from airflow.sdk.exceptions import AirflowFailException
from helpers import churn_spec_raw, mark_promoted, write_spec
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from mlops_airflow.core.model_loading import estimator_kind
from mlops_airflow.exceptions import MlopsError, UnsafeModelVersionError, UnservableVersionError
from mlops_airflow.hooks.model_versions import alias_version, evaluate_registered_versions, require_promoted, require_servable, restore_previous_champion
from mlops_airflow.specs import load_spec

SECRET = "lock-secret"
WINDOW_END = dt.date(2026, 4, 15)  # the churn spec evaluates on the 7 days before it: 2026-04-08..2026-04-15
FIT_BEFORE = {"window_start": "2026-03-11", "validation_start": "2026-04-08"}  # fit on days before the evaluation window
FIT_OVERLAPPING = {"window_start": "2026-03-14", "validation_start": "2026-04-11"}


class FakeRegistry:
    """What MlflowHook answers for one registered model, held in memory; ``calls`` lists every call but the alias reads.

    ``set_model_version_tag`` is MlflowClient's, so that :func:`helpers.mark_promoted` writes
    a promotion record here as it does in MLflow. ``errors`` maps a method name to the
    MlflowException it raises.
    """

    def __init__(self, name: str = "churn", *, secret: str = SECRET, versions: int = 3) -> None:
        self.name, self.secret = name, secret
        self.tags: dict[str, dict[str, str]] = {str(v): {} for v in range(1, versions + 1)}
        self.params: dict[str, dict[str, str]] = {f"run-{v}": {} for v in self.tags}
        self.aliases: dict[str, str] = {}
        self.calls: list[tuple] = []
        self.errors: dict[str, Exception] = {}

    def _call(self, method: str, *args, **kwargs) -> None:
        self.calls.append((method, *args, *kwargs.items()))
        if method in self.errors:
            raise self.errors[method]

    def version(self, version: str) -> ModelVersion:
        """The version as MLflow returns it: its tags, its run, its aliases."""
        tags = [ModelVersionTag(key, value) for key, value in self.tags[version].items()]
        aliases = [alias for alias, target in self.aliases.items() if target == version]
        return ModelVersion(self.name, version, creation_timestamp=0, run_id=f"run-{version}", tags=tags, aliases=aliases)

    # MlflowHook's methods.
    def get_lock_secret(self) -> str:
        self._call("get_lock_secret")
        return self.secret

    def ensure_reachable(self) -> None:
        self._call("ensure_reachable")

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        if "get_version_by_alias" in self.errors:
            raise self.errors["get_version_by_alias"]
        version = self.aliases.get(alias) if name == self.name else None
        return None if version is None else self.version(version)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        self._call("set_alias", name, alias, version)
        self.aliases[alias] = str(version)

    def get_run_params(self, run_id: str) -> dict[str, str]:
        self._call("get_run_params", run_id)
        return dict(self.params[run_id])

    def estimator_kind(self, run_id: str | None, default: str) -> str:
        return estimator_kind(self.get_run_params(run_id) if run_id else {}, default)

    def check_model(self, name: str, version: str | int, *, estimator_kind: str) -> None:
        self._call("check_model", name, str(version), estimator_kind=estimator_kind)

    def load_model(self, name: str, version: str | int, *, estimator_kind: str):
        self._call("load_model", name, str(version), estimator_kind=estimator_kind)
        raise AssertionError("no test here scores a model")

    def set_version_tags(self, name: str, version: str | int, tags: dict[str, str]) -> None:
        self._call("set_version_tags", name, str(version), tags)
        self.tags[str(version)].update(tags)

    # MlflowClient's, for helpers.mark_promoted.
    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.tags[str(version)][key] = value

    def called(self, method: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == method]


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def spec(tmp_path):
    """The churn spec with its data in an empty folder of the test's own."""
    raw = churn_spec_raw()
    raw["data"]["uri"] = str(tmp_path / "events")
    return load_spec(write_spec(raw, tmp_path))


def promoted(registry: FakeRegistry, version: str, secret: str = SECRET) -> ModelVersion:
    mark_promoted(registry, registry.name, version, secret=secret)
    return registry.version(version)


class TestRequirePromoted:
    def test_a_sealed_promotion_passes(self, registry):
        assert require_promoted("churn", promoted(registry, "3"), action="deploy", secret=SECRET) is None

    @pytest.mark.parametrize(
        ("record", "changes", "reason"),
        [
            pytest.param(False, {}, "it has no promotion decision on record", id="no-record"),
            pytest.param(True, {"mlops.decision": "rejected"}, "its recorded decision is 'rejected', not 'promoted'", id="rejected"),
            pytest.param(True, {"mlops.decision.by": "mallory"}, "its promotion record is not sealed by this pipeline", id="record-changed-since"),
        ],
    )
    def test_a_version_without_a_sealed_promotion_is_refused_without_retry(self, registry, record, changes, reason):
        if record:
            promoted(registry, "3")
        registry.tags["3"].update(changes)
        with pytest.raises(UnservableVersionError, match=f"^refusing to deploy idle colour with churn v3: {re.escape(reason)}"):
            require_promoted("churn", registry.version("3"), action="deploy idle colour with", secret=SECRET)
        assert issubclass(UnservableVersionError, AirflowFailException)

    def test_a_promotion_sealed_with_another_secret_is_refused(self, registry):
        with pytest.raises(UnservableVersionError, match="not sealed by this pipeline"):
            require_promoted("churn", promoted(registry, "3", secret="another secret"), action="score with", secret=SECRET)

    def test_a_promotion_still_under_way_is_retryable(self, registry):
        """Its promotion's retry completes the record: the task's own retry may then pass."""
        promoted(registry, "3")
        registry.tags["3"]["mlops.decision"] = "promoting"
        with pytest.raises(MlopsError, match=r"^refusing to switch traffic to churn v3: its promotion has not finished") as info:
            require_promoted("churn", registry.version("3"), action="switch traffic to", secret=SECRET)
        assert not isinstance(info.value, AirflowFailException)


class TestRequireServable:
    def test_checks_the_format_with_the_runs_estimator_kind(self, registry, spec):
        registry.params["run-3"] = {"estimator": "logistic_regression"}
        version = promoted(registry, "3")
        assert require_servable(registry, spec, version, action="deploy") == "logistic_regression"
        assert registry.called("check_model") == [("check_model", "churn", "3", ("estimator_kind", "logistic_regression"))]

    def test_a_run_without_the_param_is_the_specs_kind(self, registry, spec):
        assert require_servable(registry, spec, promoted(registry, "3"), action="deploy") == spec.training.estimator.kind == "hist_gradient_boosting"

    def test_the_seal_is_checked_with_the_connections_secret(self, registry, spec):
        version = promoted(registry, "3", secret="")
        with pytest.raises(UnservableVersionError, match="not sealed by this pipeline"):
            require_servable(registry, spec, version, action="deploy")
        assert registry.called("get_lock_secret") == [("get_lock_secret",)]

    def test_an_unpromoted_version_is_refused_before_its_model_is_fetched(self, registry, spec):
        with pytest.raises(UnservableVersionError, match="^refusing to score with churn v2: it has no promotion decision"):
            require_servable(registry, spec, registry.version("2"), action="score with")
        assert registry.called("check_model") == []

    def test_an_unsafe_format_is_refused(self, registry, spec):
        registry.errors["check_model"] = UnsafeModelVersionError("refusing to load churn v3: pickle")
        with pytest.raises(UnsafeModelVersionError, match="pickle"):
            require_servable(registry, spec, promoted(registry, "3"), action="deploy")


class TestAliasVersion:
    @pytest.mark.parametrize(
        ("name", "alias", "expected"),
        [
            pytest.param("churn", "champion", "2", id="set"),
            pytest.param("churn", "challenger", None, id="unset"),
            pytest.param("no-such-model", "champion", None, id="no-such-model"),
        ],
    )
    def test_the_version_as_a_string(self, registry, name, alias, expected):
        registry.aliases["champion"] = "2"
        assert alias_version(registry, name, alias) == expected


class TestRestorePreviousChampion:
    def test_swaps_champion_and_previous_champion(self, registry):
        registry.aliases.update(champion="2", previous_champion="1")
        assert restore_previous_champion(registry, "churn", previous="1", current="2") == {"champion": "1", "previous_champion": "2"}
        assert registry.aliases == {"champion": "1", "previous_champion": "2"}
        assert registry.called("set_alias") == [("set_alias", "churn", "champion", "1"), ("set_alias", "churn", "previous_champion", "2")]

    def test_without_a_current_champion_previous_champion_stays(self, registry):
        registry.aliases.update(previous_champion="1")
        assert restore_previous_champion(registry, "churn", previous="1", current=None) == {"champion": "1", "previous_champion": "1"}
        assert registry.called("set_alias") == [("set_alias", "churn", "champion", "1")]

    def test_aliases_that_do_not_read_back_are_a_retryable_error(self, registry):
        """previous_champion gone meanwhile (another writer): the task's retry, under the lock, sets it again."""
        expected = "aliases of churn read back as {'champion': '1', 'previous_champion': None}, expected {'champion': '1', 'previous_champion': '1'}"
        with pytest.raises(MlopsError, match=f"^{re.escape(expected)}$") as info:
            restore_previous_champion(registry, "churn", previous="1", current=None)
        assert not isinstance(info.value, AirflowFailException)

    def test_a_move_lost_to_another_writer_is_reported(self, registry):
        class Racing(FakeRegistry):
            def set_alias(self, name, alias, version):
                super().set_alias(name, alias, version)
                if alias == "previous_champion":
                    self.aliases["champion"] = "3"  # a promotion that did not take the lock

        racing = Racing()
        racing.aliases.update(champion="2", previous_champion="1")
        with pytest.raises(MlopsError, match=r"read back as \{'champion': '3', 'previous_champion': '2'\}, expected \{'champion': '1'"):
            restore_previous_champion(racing, "churn", previous="1", current="2")


class TestEvaluateRegisteredVersionsRefusals:
    def test_no_challenger(self, registry, spec):
        registry.aliases["champion"] = "2"
        with pytest.raises(AirflowFailException, match="^churn has no 'challenger' version to evaluate$"):
            evaluate_registered_versions(registry, spec, WINDOW_END)
        assert registry.calls == [("ensure_reachable",)]

    @pytest.mark.parametrize("expected", [pytest.param("2", id="str"), pytest.param(2, id="int")])
    def test_a_challenger_other_than_the_one_trained(self, registry, spec, expected):
        registry.aliases.update(challenger="3", champion="1")
        message = "churn@challenger is v3, but this run trained v2: another run moved the alias; re-run training"
        with pytest.raises(AirflowFailException, match=f"^{re.escape(message)}$"):
            evaluate_registered_versions(registry, spec, WINDOW_END, expected_challenger=expected)
        assert registry.calls == [("ensure_reachable",)]
        assert registry.tags["3"] == {}

    @pytest.mark.parametrize(
        ("challenger_fit", "champion_fit", "label"),
        [
            pytest.param(FIT_OVERLAPPING, FIT_BEFORE, "challenger v3", id="challenger"),
            pytest.param(FIT_BEFORE, FIT_OVERLAPPING, "champion v1", id="champion"),
        ],
    )
    def test_a_version_fit_on_the_evaluation_days_is_invalid(self, registry, spec, challenger_fit, champion_fit, label):
        """The expected challenger passes on to the evaluation, which cannot be computed on days a version saw: fail closed."""
        registry.aliases.update(challenger="3", champion="1")
        registry.params.update({"run-3": challenger_fit, "run-1": champion_fit})
        reason = f"the evaluation window 2026-04-08..2026-04-15 overlaps the days {label} was fit on (2026-03-14..2026-04-11)"
        with pytest.raises(AirflowFailException, match=f"^evaluation of churn v3 cannot be computed: {re.escape(reason)}"):
            evaluate_registered_versions(registry, spec, WINDOW_END, expected_challenger="3")
        assert registry.tags["3"]["mlops.decision"] == "invalid"
        assert registry.tags["3"]["mlops.decision.reasons"].startswith(reason)
        assert registry.tags["1"] == {}  # the champion's record is left alone
        assert registry.called("load_model") == []

    def test_no_rows_in_the_window_is_invalid(self, registry, spec):
        registry.aliases["challenger"] = "3"
        registry.params["run-3"] = FIT_BEFORE
        with pytest.raises(AirflowFailException, match=f"cannot be computed: no rows under {re.escape(spec.data.uri)} for the evaluation window"):
            evaluate_registered_versions(registry, spec, WINDOW_END)
        assert registry.tags["3"]["mlops.decision"] == "invalid"
        assert registry.called("load_model") == []

    @pytest.mark.parametrize(
        ("method", "code", "raised"),
        [
            pytest.param("get_run_params", RESOURCE_DOES_NOT_EXIST, AirflowFailException, id="run-deleted-fails"),
            pytest.param("get_version_by_alias", INTERNAL_ERROR, MlopsError, id="server-error-retries"),
        ],
    )
    def test_registry_errors(self, registry, spec, method, code, raised):
        registry.aliases["challenger"] = "3"
        registry.errors[method] = MlflowException("boom", error_code=code)
        with pytest.raises(raised, match="churn.*: boom$") as info:
            evaluate_registered_versions(registry, spec, WINDOW_END)
        assert isinstance(info.value, AirflowFailException) is (raised is AirflowFailException)
        assert registry.tags["3"] == {}
