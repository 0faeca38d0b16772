"""The serving operators against an in-memory backend and a real MLflow store."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from helpers import REPO_ROOT, mark_promoted, task_context

from mlops_airflow.core.payloads import Release
from mlops_airflow.serving.base import Color, ColorNotReadyError, ColorState, LiveColorError, ServingStatus, SwitchOutcome

SPEC = str(REPO_ROOT / "include" / "models" / "churn.yaml")


class MemoryBackend:
    """A ServingBackend in a dict: what runs on each colour, which is live."""

    def __init__(self, live=None, versions=None):
        self.live = live
        self.versions = dict(versions or {})
        self.calls = []

    def status(self):
        return ServingStatus(self.live, {c: self.is_ready(c) for c in Color})

    def is_ready(self, color):
        version = self.versions.get(color)
        return ColorState(color, version, version is not None, 1 if version else 0)

    def deploy(self, color, version, model_uri, *, estimator_kind):
        if color is self.live:
            raise LiveColorError("live")
        self.calls.append(("deploy", color, version))
        self.versions[color] = version
        return True

    def wait_ready(self, color, *, timeout, poll=1.0):
        return self.is_ready(color)

    def preview_url(self, color):
        return f"http://preview-{color}"

    def live_url(self):
        return "http://live"

    def switch(self, color):
        if self.live is color:
            return SwitchOutcome.ALREADY_LIVE
        if not self.is_ready(color).ready:
            raise ColorNotReadyError(color)
        self.calls.append(("switch", color))
        self.live = color
        return SwitchOutcome.SWITCHED

    def scale_down(self, color):
        self.calls.append(("scale_down", color))
        return self.versions.pop(color, None) is not None


@pytest.fixture
def registry(mlflow_store, monkeypatch):
    """churn v1 and v2 registered and promoted, v3 registered with no decision on record.

    No artifacts: the model format check (tests/unit/core/test_model_loading.py) is recorded, not run.
    """
    from mlflow.tracking import MlflowClient

    from mlops_airflow.hooks.mlflow import MlflowHook

    client = MlflowClient(mlflow_store, mlflow_store)
    client.create_registered_model("churn")
    for _ in range(3):
        client.create_model_version("churn", source="file:///nowhere", run_id=None)
    for version in ("1", "2"):
        mark_promoted(client, "churn", version)
    client.format_checks = []
    monkeypatch.setattr(
        MlflowHook, "check_model", lambda hook, name, version, *, estimator_kind: client.format_checks.append((name, str(version), estimator_kind))
    )
    return client


@pytest.fixture
def backend(monkeypatch):
    from mlops_airflow.serving import factory

    memory = MemoryBackend()
    monkeypatch.setattr(factory, "serving_backend", lambda spec, mlflow_env: memory)
    return memory


def operator(cls, **kwargs):
    return cls(task_id=cls.__name__, spec_path=SPEC, **kwargs)


class TestDeployIdleColorOperator:
    def test_deploys_the_champion_to_the_idle_colour(self, registry, backend):
        from mlops_airflow.operators.serving import DeployIdleColorOperator

        registry.set_registered_model_alias("churn", "champion", "2")
        backend.live, backend.versions = Color.BLUE, {Color.BLUE: "1"}
        release = operator(DeployIdleColorOperator).execute(task_context())
        assert (release["action"], release["color"], release["version"], release["previous_color"], release["previous_version"]) == (
            "deployed",
            "green",
            "2",
            "blue",
            "1",
        )
        assert backend.calls == [("deploy", Color.GREEN, "2")]

    def test_a_re_run_after_success_touches_nothing(self, registry, backend):
        from mlops_airflow.operators.serving import DeployIdleColorOperator

        registry.set_registered_model_alias("churn", "champion", "2")
        backend.live, backend.versions = Color.GREEN, {Color.GREEN: "2", Color.BLUE: "1"}
        assert operator(DeployIdleColorOperator).execute(task_context())["action"] == "already_live"
        assert backend.calls == []

    def test_no_champion_fails(self, registry, backend):
        from mlops_airflow.operators.serving import DeployIdleColorOperator

        with pytest.raises(AirflowFailException, match="no 'champion'"):
            operator(DeployIdleColorOperator).execute(task_context())

    def test_the_champion_is_format_checked_before_it_is_deployed(self, registry, backend):
        from mlops_airflow.operators.serving import DeployIdleColorOperator

        registry.set_registered_model_alias("churn", "champion", "2")
        operator(DeployIdleColorOperator).execute(task_context())
        assert registry.format_checks == [("churn", "2", "hist_gradient_boosting")]

    @pytest.mark.parametrize(
        ("tags", "reason"),
        [
            pytest.param({}, "no promotion decision on record", id="alias-set-by-hand"),
            pytest.param({"mlops.decision": "rejected"}, "recorded decision is 'rejected'", id="rejected"),
            pytest.param({"mlops.decision": "promoted"}, "lacks its record", id="promoted-without-record"),
        ],
    )
    def test_a_champion_without_a_promotion_record_is_refused(self, registry, backend, tags, reason):
        from mlops_airflow.exceptions import UnservableVersionError
        from mlops_airflow.operators.serving import DeployIdleColorOperator

        for key, value in tags.items():
            registry.set_model_version_tag("churn", "3", key, value)
        registry.set_registered_model_alias("churn", "champion", "3")
        with pytest.raises(UnservableVersionError, match=f"refusing to deploy churn v3: .*{reason}"):
            operator(DeployIdleColorOperator).execute(task_context())
        assert backend.calls == []
        assert registry.format_checks == []


class TestSwitchTrafficOperator:
    def test_switches_and_counts(self, registry, backend, statsd):
        from mlops_airflow.operators.serving import SwitchTrafficOperator

        backend.live, backend.versions = Color.BLUE, {Color.BLUE: "1", Color.GREEN: "2"}
        release = Release(action="deployed", color="green", version="2", run_id="r").to_xcom()
        result = operator(SwitchTrafficOperator).execute(task_context({"deploy_idle_color": release}))
        assert (result["outcome"], backend.live) == ("switched", Color.GREEN)
        assert statsd(1) == ["mlops.serving.churn.switch:1|c"]

    def test_the_end_of_a_canary_puts_its_weight_gauge_back_to_zero(self, registry, backend, statsd, tmp_path):
        import yaml
        from helpers import write_spec

        from mlops_airflow.operators.serving import SwitchTrafficOperator

        raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
        raw["serving"]["release"]["strategy"] = "canary"
        spec_path = str(write_spec(raw, tmp_path))
        backend.live, backend.versions = Color.BLUE, {Color.BLUE: "1", Color.GREEN: "2"}
        release = Release(action="deployed", color="green", version="2", run_id="r").to_xcom()
        SwitchTrafficOperator(task_id="switch_traffic", spec_path=spec_path).execute(task_context({"deploy_idle_color": release}))
        assert sorted(statsd(2)) == ["mlops.release.churn.canary_weight:0|g", "mlops.serving.churn.switch:1|c"]

    def test_a_version_without_a_promotion_record_gets_no_traffic(self, registry, backend):
        from mlops_airflow.exceptions import UnservableVersionError
        from mlops_airflow.operators.serving import SwitchTrafficOperator

        backend.live, backend.versions = Color.BLUE, {Color.BLUE: "1", Color.GREEN: "3"}
        release = Release(action="deployed", color="green", version="3", run_id="r").to_xcom()
        with pytest.raises(UnservableVersionError, match="refusing to switch live traffic to churn v3: it has no promotion decision"):
            operator(SwitchTrafficOperator).execute(task_context({"deploy_idle_color": release}))
        assert backend.live is Color.BLUE


class TestRollbackReleaseOperator:
    def test_puts_traffic_and_champion_back_and_records_it(self, registry, backend, statsd):
        from mlops_airflow.operators.serving import RollbackReleaseOperator

        # v2 was promoted and switched to green, then verification failed.
        registry.set_registered_model_alias("churn", "champion", "2")
        registry.set_registered_model_alias("churn", "previous_champion", "1")
        backend.live, backend.versions = Color.GREEN, {Color.BLUE: "1", Color.GREEN: "2"}
        release = Release(action="deployed", color="green", version="2", previous_color="blue", previous_version="1", run_id="r").to_xcom()
        result = operator(RollbackReleaseOperator).execute(task_context({"deploy_idle_color": release}))
        assert result == {"color": "blue", "champion": "1"}
        assert backend.live is Color.BLUE
        assert str(registry.get_model_version_by_alias("churn", "champion").version) == "1"
        assert str(registry.get_model_version_by_alias("churn", "previous_champion").version) == "2"
        assert "release failed" in registry.get_model_version("churn", "2").tags["mlops.serving.rolled_back"]
        assert statsd(1) == ["mlops.serving.churn.rollback:1|c"]

    def test_nothing_to_roll_back_is_a_skip(self, registry, backend):
        from mlops_airflow.operators.serving import RollbackReleaseOperator

        registry.set_registered_model_alias("churn", "champion", "1")
        backend.live, backend.versions = Color.BLUE, {Color.BLUE: "1"}
        with pytest.raises(AirflowSkipException, match="nothing to roll back"):
            operator(RollbackReleaseOperator).execute(task_context())

    def test_waits_for_a_promotion_holding_the_registry_lock(self, registry, backend):
        """The aliases move only under the lock: while a promotion holds it, nothing moves; after, the rollback does."""
        import datetime as dt
        import threading
        import time

        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.hooks.registry_lock import RegistryLockTimeoutError, registry_lock
        from mlops_airflow.operators.serving import RollbackReleaseOperator

        registry.set_registered_model_alias("churn", "champion", "2")
        registry.set_registered_model_alias("churn", "previous_champion", "1")
        backend.live, backend.versions = Color.GREEN, {Color.BLUE: "1", Color.GREEN: "2"}
        release = Release(action="deployed", color="green", version="2", previous_color="blue", previous_version="1", run_id="r").to_xcom()
        rollback = operator(RollbackReleaseOperator, lock_timeout=dt.timedelta(seconds=0.5))
        promotion = "retrain_churn/manual__other/promote_champion/try1@worker~1:1"

        def aliases():
            return {alias: str(registry.get_model_version_by_alias("churn", alias).version) for alias in ("champion", "previous_champion")}

        with registry_lock(MlflowHook(), "churn", owner=promotion):
            with pytest.raises(RegistryLockTimeoutError, match=f"held by '{promotion}'"):
                rollback.execute(task_context({"deploy_idle_color": release}))
            assert aliases() == {"champion": "2", "previous_champion": "1"}
        released = threading.Event()

        def promote_then_release():
            with registry_lock(MlflowHook(), "churn", owner=promotion):
                time.sleep(1.0)
                released.set()

        holder = threading.Thread(target=promote_then_release)
        holder.start()
        time.sleep(0.3)
        result = operator(RollbackReleaseOperator).execute(task_context({"deploy_idle_color": release}))
        holder.join()
        assert released.is_set()  # the rollback waited for the promotion
        assert result["champion"] == "1"
        assert aliases() == {"champion": "1", "previous_champion": "2"}


class TestScaleDownPreviousOperator:
    def test_scales_down_the_old_colour_unless_it_is_live_again(self, registry, backend):
        import datetime as dt

        from mlops_airflow.operators.serving import ScaleDownPreviousOperator

        release = Release(action="deployed", color="green", version="2", previous_color="blue", previous_version="1", run_id="r").to_xcom()
        backend.live, backend.versions = Color.GREEN, {Color.BLUE: "1", Color.GREEN: "2"}
        operator(ScaleDownPreviousOperator, drain=dt.timedelta(0)).execute(task_context({"deploy_idle_color": release}))
        assert backend.calls == [("scale_down", Color.BLUE)]
        backend.live = Color.BLUE  # rolled back meanwhile
        backend.calls.clear()
        operator(ScaleDownPreviousOperator, drain=dt.timedelta(0)).execute(task_context({"deploy_idle_color": release}))
        assert backend.calls == []

    def test_defers_for_the_drain_delay(self, registry, backend):
        import datetime as dt

        from airflow.sdk.exceptions import TaskDeferred

        from mlops_airflow.operators.serving import ScaleDownPreviousOperator

        release = Release(action="deployed", color="green", version="2", previous_color="blue", previous_version="1", run_id="r").to_xcom()
        with pytest.raises(TaskDeferred) as deferred:
            operator(ScaleDownPreviousOperator, drain=dt.timedelta(minutes=5)).execute(task_context({"deploy_idle_color": release}))
        assert deferred.value.method_name == "execute_complete"
        assert backend.calls == []

    def test_a_drain_under_a_minute_is_waited_in_the_worker(self, registry, backend, monkeypatch):
        import datetime as dt

        from mlops_airflow.operators import serving

        waited = []
        monkeypatch.setattr(serving.time, "sleep", waited.append)
        release = Release(action="deployed", color="green", version="2", previous_color="blue", previous_version="1", run_id="r").to_xcom()
        backend.live, backend.versions = Color.GREEN, {Color.BLUE: "1", Color.GREEN: "2"}
        operator(serving.ScaleDownPreviousOperator, drain=dt.timedelta(seconds=2)).execute(task_context({"deploy_idle_color": release}))
        assert waited == [2.0]
        assert backend.calls == [("scale_down", Color.BLUE)]
