"""Serving operators: put the champion on the idle colour, test it, switch, verify, roll back, drain.

Where they sit in the loop: promote -> **deploy_idle_color -> smoke_test_idle ->
switch_traffic -> verify_live -> scale_down_previous**, with **rollback_release** when
any of them fails. They use only the :class:`~mlops_airflow.serving.base.ServingBackend`
protocol; the spec's ``serving.backend`` picks the backend.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.constants import CHAMPION_ALIAS, DEFAULT_MLFLOW_CONN_ID, PREVIOUS_CHAMPION_ALIAS
from mlops_airflow.observability.metrics import RELEASE_CANARY_WEIGHT, SERVING_ROLLBACK, SERVING_SMOKE_LATENCY, SERVING_SWITCH, gauge, incr, timings
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.core.payloads import Release
    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.serving.base import ServingBackend
    from mlops_airflow.specs import ModelSpec

ALREADY_LIVE = "already_live"
DEPLOYED = "deployed"
TAG_ROLLED_BACK = "mlops.serving.rolled_back"


class _ServingOperator(FailFastTemplates, BaseOperator):
    """Shared: the spec, the MLflow hook, the backend, and the deploy task's XCom."""

    template_fields: Sequence[str] = ("spec_path",)

    def __init__(self, *, spec_path: str, deploy_task_id: str = "deploy_idle_color", mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.deploy_task_id = deploy_task_id
        self.mlflow_conn_id = mlflow_conn_id

    def spec_hook_and_backend(self) -> tuple[ModelSpec, MlflowHook, ServingBackend]:
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.serving import factory
        from mlops_airflow.utils.task_args import load_task_spec

        spec = load_task_spec(self.spec_path)
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        return spec, hook, factory.serving_backend(spec, mlflow_env=hook.get_env())

    def release(self, context: Context) -> Release:
        from mlops_airflow.core.payloads import Release
        from mlops_airflow.utils.task_args import read_payload

        pulled = context["ti"].xcom_pull(task_ids=self.deploy_task_id)
        if not pulled:
            raise AirflowFailException(f"no release from {self.deploy_task_id!r}")
        return read_payload(Release, pulled, f"the XCom of {self.deploy_task_id}")


def golden_rows(hook: MlflowHook, spec: ModelSpec, run_id: str):
    """The first rows of the version's reference sample: real inputs the version was trained on."""
    return hook.load_reference_sample(run_id).head(spec.serving.smoke.golden_rows)


class DeployIdleColorOperator(_ServingOperator):
    """
    Run the ``champion`` version on the colour that is not live, and wait until it is ready.

    Nothing is touched when the live colour already serves the champion (a re-run after a
    successful release). The XCom names the colour, the version and what was live before,
    for the tasks after it and for the rollback. A champion without a promotion on record (an
    alias moved by hand), or in any format but skops with the package's trusted types, is
    refused before any server starts.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.payloads import Release
        from mlops_airflow.hooks.model_versions import require_servable

        spec, hook, backend = self.spec_hook_and_backend()
        champion = hook.get_version_by_alias(spec.registered_model_name, CHAMPION_ALIAS)
        if champion is None:
            raise AirflowFailException(f"{spec.registered_model_name} has no {CHAMPION_ALIAS!r} to serve")
        kind = require_servable(hook, spec, champion, action="deploy")
        version = str(champion.version)
        status = backend.status()
        if status.live is not None and status.live_version == version and status.colors[status.live].ready:
            self.log.info("%s v%s is already live on %s; nothing to deploy", spec.name, version, status.live)
            return Release(action=ALREADY_LIVE, color=str(status.live), version=version, run_id=champion.run_id).to_xcom()
        idle = status.idle
        backend.deploy(idle, version, f"models:/{spec.registered_model_name}/{version}", estimator_kind=kind)
        state = backend.wait_ready(idle, timeout=spec.serving.ready_timeout_seconds)
        self.log.info("%s v%s is ready on %s (%s); live is %s", spec.name, version, idle, state.detail, status.live)
        return Release(
            action=DEPLOYED,
            color=str(idle),
            version=version,
            run_id=champion.run_id,
            previous_color=str(status.live) if status.live else None,
            previous_version=status.live_version,
        ).to_xcom()


class SmokeTestIdleOperator(_ServingOperator):
    """Test the new colour through its preview URL before it gets any live traffic; fail with every problem found."""

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.serving.base import Color
        from mlops_airflow.serving.smoke import smoke_test

        release = self.release(context)
        if release.action == ALREADY_LIVE:
            self.log.info("Nothing new to test: v%s is already live", release.version)
            return {"skipped": True}
        spec, hook, backend = self.spec_hook_and_backend()
        rows = golden_rows(hook, spec, release.run_id)
        kind = hook.estimator_kind(release.run_id, spec.training.estimator.kind)
        expected = hook.load_model(spec.registered_model_name, release.version, estimator_kind=kind).predict(rows)
        smoke = spec.serving.smoke
        result = smoke_test(
            backend.preview_url(Color(release.color)),
            rows,
            expected,
            burst=smoke.burst_requests,
            max_p95_ms=smoke.max_p95_ms,
            max_error_rate=smoke.max_error_rate,
            tolerance=smoke.tolerance,
            concurrency=smoke.concurrency,
        )
        timings(SERVING_SMOKE_LATENCY, result.latencies_ms, model=spec.name)
        self.log.info("Smoke test of %s v%s on %s: %s", spec.name, release.version, release.color, result.as_dict())
        if not result.passed:
            raise AirflowFailException(f"smoke test of {spec.name} v{release.version} on {release.color} failed: " + "; ".join(result.problems))
        return result.as_dict()


class SwitchTrafficOperator(_ServingOperator):
    """Point live traffic at the tested colour: refused when it is not ready, or when its version has no promotion on record; a no-op when it is already live."""

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.hooks.model_versions import require_promoted
        from mlops_airflow.serving.base import Color, SwitchOutcome

        release = self.release(context)
        spec, hook, backend = self.spec_hook_and_backend()
        version = hook.get_model_version(spec.registered_model_name, release.version)
        require_promoted(spec.registered_model_name, version, action="switch live traffic to", secret=hook.get_lock_secret())
        outcome = backend.switch(Color(release.color))
        if outcome is SwitchOutcome.SWITCHED:
            incr(SERVING_SWITCH, model=spec.name)
        if spec.serving.release.strategy == "canary":
            gauge(RELEASE_CANARY_WEIGHT, 0, model=spec.name)  # no canary in flight: the dashboards' weight falls back
        self.log.info("%s: live traffic on %s (%s)", spec.name, release.color, outcome)
        return {"outcome": str(outcome), "color": release.color, "at": dt.datetime.now(dt.UTC).isoformat()}


class VerifyLiveOperator(_ServingOperator):
    """Through the live URL: the live colour is the released one, serves the champion, and answers."""

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.serving.smoke import payload, post

        release = self.release(context)
        spec, hook, backend = self.spec_hook_and_backend()
        status = backend.status()
        champion = hook.get_version_by_alias(spec.registered_model_name, CHAMPION_ALIAS)
        problems = []
        if str(status.live) != release.color:
            problems.append(f"live colour is {status.live}, expected {release.color}")
        if champion is None or status.live_version != str(champion.version):
            problems.append(f"live serves v{status.live_version}, champion is v{champion.version if champion else None}")
        rows = golden_rows(hook, spec, release.run_id).head(5)
        code, latency, answer = post(backend.live_url(), payload(rows), timeout=10)
        if code != 200 or not answer or len(answer.get("predictions", [])) != len(rows):
            problems.append(f"the live URL answered {code} without {len(rows)} predictions")
        if problems:
            raise AirflowFailException(f"{spec.name} live verification failed: " + "; ".join(problems))
        self.log.info("%s v%s is live on %s at %s (%.0f ms)", spec.name, status.live_version, status.live, backend.live_url(), latency)
        return {"live_url": backend.live_url(), "color": str(status.live), "version": status.live_version}


class RollbackReleaseOperator(_ServingOperator):
    """
    A step of the release failed: put live traffic back on the colour that served before, and
    ``champion`` back on the version it serves (from ``previous_champion``), recorded as tags.

    Runs on failure (``trigger_rule="one_failed"``). Afterwards the live colour and the
    registry agree again, as they did before the run. The aliases are read and moved under
    the registry's promotion lock, so the rollback never interleaves with a promotion.

    :param lock_timeout: how long to wait for a promotion of the same model to finish.
    :param lock_ttl: after how long a lock whose holder died may be broken.
    """

    def __init__(self, *, lock_timeout: dt.timedelta = dt.timedelta(minutes=10), lock_ttl: dt.timedelta = dt.timedelta(minutes=15), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lock_timeout = lock_timeout
        self.lock_ttl = lock_ttl

    def _release_if_any(self, context: Context) -> Release | None:
        """The deploy task's release; ``None`` when it failed before making one.

        A release that is there but cannot be read fails the rollback (no retry) naming why:
        skipping would leave live traffic where the failed release put it, unannounced.
        """
        from mlops_airflow.core.payloads import Release
        from mlops_airflow.utils.task_args import read_payload

        pulled = context["ti"].xcom_pull(task_ids=self.deploy_task_id)
        if not pulled:
            return None
        return read_payload(Release, pulled, f"the XCom of {self.deploy_task_id}")

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.hooks.registry_lock import lock_owner, registry_lock
        from mlops_airflow.serving.base import Color

        spec, hook, backend = self.spec_hook_and_backend()
        name = spec.registered_model_name
        release = self._release_if_any(context)
        status = backend.status()
        restored_color = None
        # A canary in flight splits the traffic: the old colour may have most of it and still not all.
        if release is not None and release.previous_color and (str(status.live) != release.previous_color or status.split):
            backend.switch(Color(release.previous_color))
            restored_color = release.previous_color
            if spec.serving.release.strategy == "canary":
                gauge(RELEASE_CANARY_WEIGHT, 0, model=spec.name)
        live_version = backend.status().live_version
        ti = context["ti"]
        owner = lock_owner(f"{ti.dag_id}/{ti.run_id}/{ti.task_id}", ti.try_number)
        with registry_lock(
            hook, name, owner=owner, timeout=self.lock_timeout.total_seconds(), ttl=self.lock_ttl.total_seconds(), log=self.log.warning
        ) as lease:
            champion = hook.get_version_by_alias(name, CHAMPION_ALIAS)
            previous = hook.get_version_by_alias(name, PREVIOUS_CHAMPION_ALIAS)
            restored_alias = None
            if (
                champion is not None
                and previous is not None
                and live_version is not None
                and str(champion.version) != live_version
                and str(previous.version) == live_version
            ):
                from mlops_airflow.hooks.model_versions import restore_previous_champion

                lease.ensure_held()
                restore_previous_champion(hook, name, previous=str(previous.version), current=str(champion.version))
                reason = f"release failed in {ti.dag_id}/{ti.run_id}; live back on {status.live if restored_color is None else restored_color}"
                hook.set_version_tags(name, champion.version, {TAG_ROLLED_BACK: reason})
                restored_alias = str(previous.version)
                from mlops_airflow.assets import announce_champion

                announce_champion(
                    context,
                    {
                        "version": restored_alias,
                        "previous": str(champion.version),
                        "run_id": previous.run_id,
                        "decision": "rolled_back",
                        "dag_run": f"{ti.dag_id}/{ti.run_id}",
                    },
                )
        if restored_color is None and restored_alias is None:
            raise AirflowSkipException(f"nothing to roll back: live serves v{live_version}, champion is v{champion.version if champion else None}")
        incr(SERVING_ROLLBACK, model=spec.name)
        self.log.warning(
            "Rolled %s back: live colour %s, champion v%s", spec.name, restored_color or status.live, restored_alias or (champion.version if champion else None)
        )
        return {"color": restored_color, "champion": restored_alias}


# A drain shorter than this is waited in the worker: a deferral whose trigger fires within
# seconds can race Airflow's own bookkeeping of the deferral (seen on Airflow 3.3 as a failed
# try), and a worker slot held for under a minute costs less than a trigger round-trip.
MIN_DEFERRED_DRAIN = dt.timedelta(seconds=60)


class ScaleDownPreviousOperator(_ServingOperator):
    """After the drain delay, stop the colour that served before.

    A drain of :data:`MIN_DEFERRED_DRAIN` or more is deferred (no worker slot while waiting);
    a shorter one is waited in the worker.
    """

    def __init__(self, *, drain: dt.timedelta, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drain = drain

    def execute(self, context: Context) -> None:
        release = self.release(context)
        if release.action == ALREADY_LIVE or not release.previous_color:
            self.log.info("Nothing to scale down")
            return
        if self.drain >= MIN_DEFERRED_DRAIN:
            from airflow.providers.standard.triggers.temporal import DateTimeTrigger

            self.defer(trigger=DateTimeTrigger(moment=dt.datetime.now(dt.UTC) + self.drain), method_name="execute_complete")
        if self.drain.total_seconds() > 0:
            self.log.info("Draining %s for %.0f s before scaling it down", release.previous_color, self.drain.total_seconds())
            time.sleep(self.drain.total_seconds())
        self.execute_complete(context)

    def execute_complete(self, context: Context, event: Any = None) -> None:
        from mlops_airflow.serving.base import Color

        release = self.release(context)
        spec, _, backend = self.spec_hook_and_backend()
        color = Color(release.previous_color)
        if backend.status().live is color:
            self.log.info("%s is live again (a rollback?); leaving it up", color)
            return
        stopped = backend.scale_down(color)
        self.log.info("%s %s after the drain delay", color, "scaled down" if stopped else "was already down")
