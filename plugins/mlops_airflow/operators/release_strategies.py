"""Release strategies beyond blue-green: canary steps, shadow replay and A/B tests, judged on the inference log.

Where they sit in the loop: deploy idle colour -> smoke -> **canary_release, shadow_replay or ab_test ->
decide_release** -> switch -> verify, with rollback_release when any of them fails. The spec's
``serving.release.strategy`` picks; ``blue_green`` has neither task.

- *Canary* (:class:`CanaryReleaseOperator`): live traffic moves to the new colour in steps (10 %,
  50 %, then the switch to 100 %); each step is held, then judged on what both colours answered in
  that period (:func:`mlops_airflow.core.release_analysis.analyse_canary_step`). Failed: all traffic
  back on the old colour at once, and the task fails, so that the rollback restores the aliases.
- *Shadow* (:class:`ShadowReplayOperator`): before it gets any traffic, the new colour scores the
  live colour's logged requests through its own URL (it answers no client); the report compares
  its answers with the live ones.
- *A/B* (:class:`ABTestOperator`): a fixed split, each client kept on its version by a cookie, held
  for a while; healthy, it goes to a person with its figures (the outcomes need labels).
- *Inconclusive* (too little traffic to judge, or an A/B test): :class:`ReleaseDecisionOperator` asks a person in
  the Airflow UI (human-in-the-loop); no answer in time counts as a rejection.

Every step and verdict lands on the new version's tags (``mlops.release.*``), in the task log, in
the task's XCom and in the statsd metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.constants import DEFAULT_MLFLOW_CONN_ID
from mlops_airflow.observability.metrics import RELEASE_ANALYSIS, RELEASE_CANARY_WEIGHT, RELEASE_SHADOW_AGREEMENT, gauge, incr
from mlops_airflow.operators.serving import ALREADY_LIVE, _ServingOperator
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from mlops_airflow.core.payloads import Release
    from mlops_airflow.hooks.mlflow import MlflowHook
    from mlops_airflow.specs import ModelSpec

TAG_STRATEGY = "mlops.release.strategy"
TAG_VERDICT = "mlops.release.verdict"
TAG_CANARY = "mlops.release.canary"
TAG_SHADOW = "mlops.release.shadow"
TAG_DECISION = "mlops.release.decision"
TAG_AB = "mlops.release.ab"
_FLUSH_MARGIN_SECONDS = 1.0  # beyond the servers' flush interval, before a period's log is read


def _nothing_to_compare(release: Release, live: str | None) -> str | None:
    """Why there is no old colour to judge the new one against (``None`` when there is one)."""
    if release.action == ALREADY_LIVE:
        return f"v{release.version} is already live"
    if not release.previous_color or live is None:
        return "nothing was live before this release"
    return None


ANALYSIS_COLUMNS = ("ts", "request_id", "model", "version", "color", "route", "status", "latency_ms", "response")  # request_id: each answer counts once
REPLAY_COLUMNS = (*ANALYSIS_COLUMNS, "request", "content_type")


def read_live_log(spec: ModelSpec, start: dt.datetime, end: dt.datetime, columns: Sequence[str] = ANALYSIS_COLUMNS) -> pd.DataFrame:
    """The inference log's rows of this model that came through the live URL in ``[start, end)``."""
    from mlops_airflow.core.logged_predictions import read_log
    from mlops_airflow.serving.inference_log import ROUTE_LIVE

    frame = read_log(spec, start, end, columns)
    return frame if frame.empty else frame[frame["route"] == ROUTE_LIVE]


def _record(hook: MlflowHook, spec: ModelSpec, version: str, tags: dict[str, Any]) -> None:
    hook.set_version_tags(spec.registered_model_name, version, {k: v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()})


class CanaryReleaseOperator(_ServingOperator):
    """
    Move live traffic to the released colour step by step, judging each step on the inference log.

    For each of ``serving.release.canary.steps`` (percent of live traffic on the new colour): split
    the traffic, hold it ``step_seconds``, then compare what the new colour answered with what the old
    one answered over the same period. A Failed step puts all traffic back on the old colour at once
    and fails the task (the rollback then restores the aliases). An Inconclusive one leaves the
    split as it is and ends the task: :class:`ReleaseDecisionOperator` asks a person. After the last
    Successful step, ``switch_traffic`` moves the rest. A first release (nothing live) has nothing to
    compare with: it is switched as blue-green.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.release_analysis import CanaryCriteria, Verdict
        from mlops_airflow.hooks.model_versions import require_promoted
        from mlops_airflow.serving.base import Color

        release = self.release(context)
        spec, hook, backend = self.spec_hook_and_backend()
        status = backend.status()
        why_not = _nothing_to_compare(release, str(status.live) if status.live else None)
        if why_not:
            self.log.info("No canary: %s", why_not)
            return {"verdict": str(Verdict.SUCCESSFUL), "steps": [], "note": why_not}
        name = spec.registered_model_name
        require_promoted(name, hook.get_model_version(name, release.version), action="send live traffic to", secret=hook.get_lock_secret())
        canary = spec.serving.release.canary
        criteria = CanaryCriteria(canary.max_error_rate, canary.max_p95_ms, canary.max_output_shift, canary.min_requests)
        new, old = Color(release.color), Color(release.previous_color)
        _record(hook, spec, release.version, {TAG_STRATEGY: "canary"})
        self._backend, self._stable, self._spec_name = backend, old, spec.name  # for on_kill
        try:
            return self._steps(context, spec, hook, backend, release, criteria, new, old)
        except AirflowFailException:
            raise
        except BaseException:
            # Whatever broke the canary (the log unreadable, the registry down, the task timed out):
            # no split is left behind for the retry or the rollback to find.
            self.log.warning("Canary of %s interrupted: all live traffic back on %s", spec.name, old)
            backend.switch(old)
            gauge(RELEASE_CANARY_WEIGHT, 0, model=spec.name)
            raise

    def on_kill(self) -> None:
        backend, stable = getattr(self, "_backend", None), getattr(self, "_stable", None)
        if backend is not None and stable is not None:
            backend.switch(stable)
            spec = getattr(self, "_spec_name", None)
            if spec:
                gauge(RELEASE_CANARY_WEIGHT, 0, model=spec)

    def _steps(self, context: Context, spec: ModelSpec, hook: MlflowHook, backend: Any, release: Release, criteria: Any, new: Any, old: Any) -> dict[str, Any]:
        from mlops_airflow.core.release_analysis import TrafficSample, Verdict, analyse_canary_step

        canary = spec.serving.release.canary
        steps: list[dict[str, Any]] = []
        for number, weight in enumerate(canary.steps, start=1):
            backend.set_weights({old: 100 - weight, new: weight})
            gauge(RELEASE_CANARY_WEIGHT, weight, model=spec.name)
            started = dt.datetime.now(dt.UTC)
            self.log.info(
                "Canary step %d: %d%% of %s's live traffic on %s (v%s) for %d s", number, weight, spec.name, new, release.version, canary.step_seconds
            )
            time.sleep(canary.step_seconds)
            ended = dt.datetime.now(dt.UTC)
            time.sleep(spec.serving.inference_log.flush_seconds + _FLUSH_MARGIN_SECONDS)  # every server has written the period
            frame = read_live_log(spec, started, ended)
            analysis = analyse_canary_step(
                TrafficSample.from_log(_answers_of(frame, old, release.previous_version)),
                TrafficSample.from_log(_answers_of(frame, new, release.version)),
                criteria,
                step=number,
                weight=weight,
                started=started,
                ended=ended,
            )
            steps.append(analysis.as_dict())
            # One tag for the whole canary, rewritten at each step: a retry's record replaces the earlier try's.
            _record(hook, spec, release.version, {TAG_CANARY: {"try": context["ti"].try_number, "steps": steps}, TAG_VERDICT: str(analysis.verdict)})
            incr(RELEASE_ANALYSIS, model=spec.name, strategy="canary", verdict=str(analysis.verdict).lower())
            self.log.info("Canary step %d (%d%%): %s %s", number, weight, analysis.verdict, analysis.as_dict())
            if analysis.verdict is Verdict.FAILED:
                backend.switch(old)
                gauge(RELEASE_CANARY_WEIGHT, 0, model=spec.name)
                raise AirflowFailException(
                    f"canary of {spec.name} v{release.version} failed at step {number} ({weight}%): {'; '.join(analysis.reasons)}; all live traffic is back on {old}"
                )
            if analysis.verdict is Verdict.INCONCLUSIVE:
                return {"verdict": str(Verdict.INCONCLUSIVE), "steps": steps, "reasons": list(analysis.reasons)}
        return {"verdict": str(Verdict.SUCCESSFUL), "steps": steps}


def _answers_of(frame: pd.DataFrame, color: Any, version: str | None) -> pd.DataFrame:
    if frame.empty:
        return frame
    chosen = frame[frame["color"] == str(color)]
    return chosen[chosen["version"] == str(version)] if version is not None else chosen


def ab_cookie(name: str, version: str) -> str:
    """The cookie of one release's test: named after its version, so a client's group in an earlier test (when the
    colours played the other roles) does not carry into this one."""
    return f"{name}_v{version}"


# An A/B test held for less than this is waited in the worker (as the serving drain): a deferral whose
# trigger fires within seconds can race Airflow's bookkeeping of the deferral.
MIN_DEFERRED_TEST = dt.timedelta(seconds=60)
MAX_SPLIT_DRIFT = 0.1  # an observed share this far from the configured one is named to the person who decides


class ABTestOperator(_ServingOperator):
    """
    Split live traffic between the two versions for ``serving.release.ab.duration_minutes``, each client keeping its version.

    New clients are split ``ab.percent`` / the rest (Caddy's weighted round robin); the router's
    keyed cookie ``<ab.cookie>_v<version>`` keeps each one on the version it was first given. The test is held
    (deferred, holding no worker slot, for a minute or more), then judged on the inference log: the
    new version's health as a canary step's (errors and p95; its predictions are meant to differ),
    and the split observed. Failed: all traffic back on the old version, the task fails, the rollback
    restores the aliases. Otherwise which version does better needs the outcomes (labels), which
    arrive later: the verdict is Inconclusive with the figures, and ``decide_release`` asks a person
    while the split stays.
    """

    def execute(self, context: Context) -> dict[str, Any] | None:
        from mlops_airflow.core.release_analysis import Verdict
        from mlops_airflow.hooks.model_versions import require_promoted
        from mlops_airflow.serving.base import Color

        release = self.release(context)
        spec, hook, backend = self.spec_hook_and_backend()
        status = backend.status()
        why_not = _nothing_to_compare(release, str(status.live) if status.live else None)
        if why_not:
            self.log.info("No A/B test: %s", why_not)
            return {"verdict": str(Verdict.SUCCESSFUL), "note": why_not}
        name = spec.registered_model_name
        require_promoted(name, hook.get_model_version(name, release.version), action="send live traffic to", secret=hook.get_lock_secret())
        ab = spec.serving.release.ab
        new, old = Color(release.color), Color(release.previous_color)
        self._backend, self._stable = backend, old  # for on_kill
        try:
            backend.set_weights({old: 100 - ab.percent, new: ab.percent}, sticky_cookie=ab_cookie(ab.cookie, release.version))
            _record(hook, spec, release.version, {TAG_STRATEGY: "ab"})
        except BaseException:
            backend.switch(old)
            raise
        started = dt.datetime.now(dt.UTC)
        duration = dt.timedelta(minutes=ab.duration_minutes)
        self.log.info(
            "A/B test of %s: %d%% of new clients on %s (v%s), sticky by the %r cookie, for %s",
            spec.name,
            ab.percent,
            new,
            release.version,
            ab_cookie(ab.cookie, release.version),
            duration,
        )
        if duration >= MIN_DEFERRED_TEST:
            from airflow.providers.standard.triggers.temporal import DateTimeTrigger

            self.defer(trigger=DateTimeTrigger(moment=started + duration), method_name="execute_complete", kwargs={"started": started.isoformat()})
        time.sleep(duration.total_seconds())
        return self.execute_complete(context, started=started.isoformat())

    def on_kill(self) -> None:
        backend, stable = getattr(self, "_backend", None), getattr(self, "_stable", None)
        if backend is not None and stable is not None:
            backend.switch(stable)

    def execute_complete(self, context: Context, event: Any = None, started: str = "") -> dict[str, Any]:
        from mlops_airflow.serving.base import Color

        release = self.release(context)
        self._stable = Color(release.previous_color)
        try:
            spec, hook, backend = self.spec_hook_and_backend()
            self._backend = backend  # for on_kill, on this operator too (a resumed task is a fresh one)
            return self._judge(spec, hook, backend, release, dt.datetime.fromisoformat(started))
        except AirflowFailException:
            raise
        except BaseException:
            self.log.warning("A/B test interrupted: all live traffic back on %s", self._stable)
            self._back_to_stable()
            raise

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context):
        """A trigger that failed or timed out never reaches :meth:`execute_complete`: the split is undone here."""
        from airflow.sdk.exceptions import TaskDeferralError

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralError:
            from mlops_airflow.serving.base import Color

            self._stable = Color(self.release(context).previous_color)
            self.log.warning("The A/B test's wait ended in an error: all live traffic back on %s", self._stable)
            self._back_to_stable()
            raise

    def _back_to_stable(self) -> None:
        backend = getattr(self, "_backend", None)
        if backend is None:
            backend = self.spec_hook_and_backend()[2]
        backend.switch(self._stable)

    def _judge(self, spec: ModelSpec, hook: MlflowHook, backend: Any, release: Release, started: dt.datetime) -> dict[str, Any]:
        from mlops_airflow.core.release_analysis import CanaryCriteria, TrafficSample, Verdict, analyse_canary_step
        from mlops_airflow.serving.base import Color

        ab = spec.serving.release.ab
        ended = dt.datetime.now(dt.UTC)
        time.sleep(spec.serving.inference_log.flush_seconds + _FLUSH_MARGIN_SECONDS)
        frame = read_live_log(spec, started, ended)
        old_answers, new_answers = _answers_of(frame, release.previous_color, release.previous_version), _answers_of(frame, release.color, release.version)
        # Health only: a variant's predictions are meant to differ, so no limit on their shift.
        health = analyse_canary_step(
            TrafficSample.from_log(old_answers),
            TrafficSample.from_log(new_answers),
            CanaryCriteria(ab.max_error_rate, ab.max_p95_ms, max_output_shift=1.0, min_requests=ab.min_requests),
            step=1,
            weight=ab.percent,
            started=started,
            ended=ended,
        )
        total = len(old_answers) + len(new_answers)
        observed = len(new_answers) / total if total else None
        report = {
            **health.as_dict(),
            "configured_percent": ab.percent,
            "observed_share": observed,
            "cookie": ab_cookie(ab.cookie, release.version),
            "baseline_version": release.previous_version,  # what the outcomes judge it against, once the labels arrive
        }
        if health.verdict is Verdict.FAILED:
            verdict, reasons = Verdict.FAILED, list(health.reasons)
        else:
            verdict, reasons = Verdict.INCONCLUSIVE, list(health.reasons)
            if observed is not None and abs(observed - ab.percent / 100) > MAX_SPLIT_DRIFT:
                reasons.append(
                    f"the new version answered {observed:.1%} of requests, not the {ab.percent}% configured: was the split undone (a router restart)?"
                )
            reasons.append("which version does better needs the outcomes (labels) of these requests; decide with the figures")
        report.update(verdict=str(verdict), reasons=reasons)
        _record(hook, spec, release.version, {TAG_AB: report, TAG_VERDICT: str(verdict)})
        incr(RELEASE_ANALYSIS, model=spec.name, strategy="ab", verdict=str(verdict).lower())
        self.log.info("A/B test of %s v%s against v%s: %s", spec.name, release.version, release.previous_version, report)
        if verdict is Verdict.FAILED:
            backend.switch(Color(release.previous_color))
            raise AirflowFailException(
                f"A/B test of {spec.name} v{release.version} failed: {'; '.join(reasons)}; all live traffic is back on {release.previous_color}"
            )
        return report


class ShadowReplayOperator(_ServingOperator):
    """
    Before the switch, have the new colour score the live colour's logged requests; judge its answers.

    The newest ``max_requests`` requests the live colour answered (200) through the live URL in the
    last ``window_minutes`` are sent again, as they were, to the new colour's own URL, ``concurrency``
    at a time. The new colour answers no client. The report: requests logged and replayed, errors,
    agreement (rows whose predicted class, or value within the smoke tolerance, is the live one's),
    p95 latency, and the KS shift of the scores. Failed fails the task (the rollback restores the
    aliases; live traffic never moved); Inconclusive goes to a person.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.core.release_analysis import ShadowCriteria, Verdict, judge_shadow

        release = self.release(context)
        spec, hook, backend = self.spec_hook_and_backend()
        status = backend.status()
        why_not = _nothing_to_compare(release, str(status.live) if status.live else None)
        if why_not:
            self.log.info("No shadow replay: %s", why_not)
            return {"verdict": str(Verdict.SUCCESSFUL), "note": why_not}
        shadow = spec.serving.release.shadow
        time.sleep(spec.serving.inference_log.flush_seconds + _FLUSH_MARGIN_SECONDS)  # the live colour's latest answers are written
        end = dt.datetime.now(dt.UTC)
        start = end - dt.timedelta(minutes=shadow.window_minutes)
        logged = read_live_log(spec, start, end, columns=REPLAY_COLUMNS)
        frame = _answers_of(logged, status.live, status.live_version)
        if not frame.empty:
            frame = frame[frame["status"] == 200].sort_values("ts").tail(shadow.max_requests)
        replays = replay(backend.preview_url(_color(release.color)), frame, concurrency=shadow.concurrency)
        report = judge_shadow(
            len(frame),
            replays,
            ShadowCriteria(shadow.min_requests, shadow.min_agreement, shadow.max_error_rate, shadow.max_p95_ms),
            tolerance=spec.serving.smoke.tolerance,
        )
        # Where the replayed requests and the answers to them are in the log: their outcomes judge the two versions once the labels arrive.
        replayed = {"window_start": start.isoformat(), "window_end": end.isoformat(), "replayed_until": dt.datetime.now(dt.UTC).isoformat()}
        recorded = {**report.as_dict(), **replayed, "live_version": status.live_version}
        _record(hook, spec, release.version, {TAG_STRATEGY: "shadow", TAG_SHADOW: recorded, TAG_VERDICT: str(report.verdict)})
        incr(RELEASE_ANALYSIS, model=spec.name, strategy="shadow", verdict=str(report.verdict).lower())
        if report.agreement is not None:
            gauge(RELEASE_SHADOW_AGREEMENT, report.agreement, model=spec.name)
        self.log.info("Shadow replay of %s v%s against v%s: %s", spec.name, release.version, status.live_version, report.as_dict())
        if report.verdict is Verdict.FAILED:
            raise AirflowFailException(f"shadow replay of {spec.name} v{release.version} failed: {'; '.join(report.reasons)}; live traffic never moved")
        return {**report.as_dict(), "reasons": list(report.reasons)}


def _color(value: str):
    from mlops_airflow.serving.base import Color

    return Color(value)


def replay(url: str, frame: pd.DataFrame, *, concurrency: int, timeout: float = 30.0) -> list:
    """Send each logged request to ``url``/invocations as it was; one :class:`Replayed` per row, in order.

    Each carries ``X-Request-Id: replay-<the live request's id>``: the new colour logs its answer under it.
    """
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from mlops_airflow.core.logged_predictions import REPLAY_ID_PREFIX
    from mlops_airflow.core.release_analysis import Replayed

    def one(row: tuple[bytes, str, bytes, str]) -> Replayed:
        body, content_type, live_response, request_id = row
        headers = {"Content-Type": content_type or "application/json", "X-Request-Id": f"{REPLAY_ID_PREFIX}{request_id}"[:128]}
        request = urllib.request.Request(f"{url}/invocations", data=body, method="POST", headers=headers)  # noqa: S310 - the colour's own URL
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                code, answer = response.status, response.read()
        except urllib.error.HTTPError as err:
            code, answer = err.code, err.read()
        except (urllib.error.URLError, OSError):
            code, answer = 0, b""
        return Replayed(live_response=live_response, status=code, response=answer, latency_ms=(time.perf_counter() - started) * 1000.0)

    if frame.empty:
        return []
    rows = list(zip(frame["request"], frame["content_type"], frame["response"], frame["request_id"], strict=True))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="shadow") as pool:
        return list(pool.map(one, rows))


class ReleaseDecisionOperator(FailFastTemplates, ApprovalOperator):
    """
    When the release's analysis is Inconclusive, a person decides in the Airflow UI: Approve goes on to the switch, Reject rolls back.

    Skipped (nothing to decide) after a Successful analysis. No answer within ``response_timeout``
    counts as Reject. The answer, and who gave it, land on the version's tags.

    :param spec_path: the model spec (templated).
    :param analysis_task_id: the canary, shadow or A/B task whose XCom holds the verdict.
    :param deploy_task_id: the task whose XCom names the release.
    :param mlflow_conn_id: where the decision is recorded.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "spec_path")

    def __init__(
        self,
        *,
        spec_path: str,
        analysis_task_id: str,
        deploy_task_id: str = "deploy_idle_color",
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)
        super().__init__(subject="Release the new version?", **kwargs)
        self.spec_path = spec_path
        self.mlflow_conn_id = mlflow_conn_id
        self.analysis_task_id = analysis_task_id
        self.deploy_task_id = deploy_task_id

    def execute(self, context: Context) -> Any:
        analysis = context["ti"].xcom_pull(task_ids=self.analysis_task_id) or {}
        verdict = analysis.get("verdict")
        if verdict == "Successful":
            raise AirflowSkipException("the analysis was successful: nothing to decide")
        if verdict != "Inconclusive":  # no analysis on record (a task marked success by hand): never a silent switch
            raise AirflowFailException(f"{self.analysis_task_id} left no verdict ({verdict!r}); release it again")
        release = self._release(context)
        self.subject = f"Release v{release.version}? Its analysis was inconclusive"
        self.body = "\n".join(
            [
                f"**{self.analysis_task_id}**: {verdict}",
                "",
                *(f"- {reason}" for reason in analysis.get("reasons", [])),
                "",
                "Approve to move all live traffic to the new version; Reject to roll back.",
            ]
        )
        return super().execute(context)

    def _release(self, context: Context) -> Release:
        from mlops_airflow.core.payloads import Release
        from mlops_airflow.utils.task_args import read_payload

        return read_payload(Release, context["ti"].xcom_pull(task_ids=self.deploy_task_id), f"the XCom of {self.deploy_task_id}")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.utils.task_args import load_task_spec

        payload = HITLOperator.execute_complete(self, context, event)
        approved = payload["chosen_options"] == [self.APPROVE]
        user = payload.get("responded_by_user") or {}
        by = user.get("name") or user.get("id")
        release = self._release(context)
        decision = {"approved": approved, "by": by, "timed_out": bool(event.get("timedout"))}
        try:  # the answer stands even when the registry is down for the record of it
            _record(MlflowHook(mlflow_conn_id=self.mlflow_conn_id), load_task_spec(self.spec_path), release.version, {TAG_DECISION: decision})
        except Exception:
            self.log.warning("Could not record the decision %s on v%s", decision, release.version, exc_info=True)
        if not approved:
            raise AirflowFailException(f"release of v{release.version} rejected {f'by {by}' if by else '(no answer before the timeout)'}")
        self.log.info("Release approved by %s", by)
        return decision
