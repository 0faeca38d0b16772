"""A/B tests and shadow replays judged on their outcomes, once the labels of their requests have arrived.

Where it sits in the loop: a release's ``ab_test`` or ``shadow_replay`` task records what it did
on the new version (``mlops.release.ab`` / ``mlops.release.shadow``: when, against which
version); the requests and answers are in the inference log; the labels land days later.
``performance_monitor_<model>``'s ``judge_release_outcomes`` task then joins them and judges
the two versions (:mod:`mlops_airflow.core.release_outcomes`), once per release.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.constants import DEFAULT_MLFLOW_CONN_ID, PARTITION_KEY
from mlops_airflow.utils.task_args import as_date, load_task_spec
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    import logging

    import pandas as pd
    from airflow.sdk import Context

    from mlops_airflow.core.release_outcomes import OutcomeRule, ReleaseOutcome
    from mlops_airflow.specs import ModelSpec

TAG_OUTCOME = "mlops.release.outcome"
UNJUDGEABLE = "Unjudgeable"  # beside the Verdicts: a record that can never be judged (delete the tag to have a repaired one read again)


class ReleaseOutcomeError(ValueError):
    """A release's record cannot be read as one to judge; the message names the version and the tag."""


class ReleaseRecordWithoutTimes(ReleaseOutcomeError):
    """A record from before releases noted when their requests were answered: it can never be judged, and nothing is wrong."""


def release_period(strategy: str, report: dict[str, Any], tag: str) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """``(start, end, logged_until)``: the live requests judged were answered in ``[start, end)``; the answers to them, by ``logged_until``."""
    names = ("started", "ended", "ended") if strategy == "ab" else ("window_start", "window_end", "replayed_until")
    if isinstance(report, dict) and not any(name in report for name in names):
        raise ReleaseRecordWithoutTimes(f"{tag} was recorded without the times of its requests (an older release): it cannot be judged")
    try:
        times = [dt.datetime.fromisoformat(report[name]) for name in names]
    except (KeyError, TypeError, ValueError) as err:
        raise ReleaseOutcomeError(f"{tag} has no times {list(names)} to find its requests in the log ({type(err).__name__}: {err})") from None
    start, end, until = (t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in times)  # a time without a zone (a tag set by hand) is UTC
    return start, end, max(end, until)


def labels_due_on(end: dt.datetime, label_delay_days: int) -> dt.date:
    """The first run day by which the labels of every day up to ``end`` are due."""
    return end.astimezone(dt.UTC).date() + dt.timedelta(days=label_delay_days)


def with_labels(spec: ModelSpec, predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The logged predictions that have a label, day by day (:func:`mlops_airflow.core.performance_monitoring.join_labels`)."""
    import pandas as pd

    from mlops_airflow.core.logged_predictions import SCORE
    from mlops_airflow.core.performance_monitoring import LABEL, POSITIVE_SCORE, join_labels

    score_column = f"probability_{spec.target.classes[-1]}"
    joined = []
    for day, rows in predictions.groupby(PARTITION_KEY):
        day_labels = labels[labels[PARTITION_KEY] == day].drop(columns=[PARTITION_KEY]) if not labels.empty else labels
        if day_labels.empty:
            continue
        scored = rows.drop(columns=[PARTITION_KEY]).rename(columns={SCORE: score_column})
        joined.append(
            join_labels(scored, day_labels, key=spec.performance.key, target=spec.target.column, classes=spec.target.classes, day=day).assign(
                **{PARTITION_KEY: day}
            )
        )
    return pd.concat(joined, ignore_index=True) if joined else pd.DataFrame(columns=[*predictions.columns, LABEL, POSITIVE_SCORE])


def judge_release(
    spec: ModelSpec,
    strategy: str,
    version: str,
    report: dict[str, Any],
    period: tuple[dt.datetime, dt.datetime, dt.datetime],
    rule: OutcomeRule,
    *,
    log: logging.Logger,
) -> ReleaseOutcome:
    """Read the release's requests, answers and labels, and judge them (no MLflow, no Airflow context)."""
    from mlops_airflow.core.logged_predictions import LOG_COLUMNS, keys_like, logged_predictions, read_log
    from mlops_airflow.core.partitions import read_window
    from mlops_airflow.core.performance_monitoring import LABEL, POSITIVE_SCORE
    from mlops_airflow.core.release_outcomes import judge_ab, judge_shadow
    from mlops_airflow.serving.inference_log import ROUTE_LIVE, ROUTE_PREVIEW

    start, end, until = period
    key = spec.performance.key
    frame = read_log(spec, start, until, LOG_COLUMNS)
    if not frame.empty:
        frame = frame.assign(version=frame["version"].astype(str))
    labels = read_window(spec.performance.labels_uri, start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date() + dt.timedelta(days=1)).frame
    key_dtype = labels[key].dtype if key in labels.columns and not labels.empty else None
    if strategy == "ab":
        live = frame[(frame["route"] == ROUTE_LIVE) & (frame["ts"] < end)] if not frame.empty else frame
        logged = keys_like(logged_predictions(live, key=key), key, key_dtype)
        old = str(report.get("baseline_version") or _other_version(logged.frame, version))
        _say_unkeyed(log, logged, key)
        answers = with_labels(spec, logged.frame, labels)
        new_rows, old_rows = answers[answers["version"] == version], answers[answers["version"] == old]
        return judge_ab(
            rule,
            new_version=version,
            old_version=old,
            new_labels=new_rows[LABEL].to_numpy(dtype="int64"),
            new_scores=new_rows[POSITIVE_SCORE].to_numpy(dtype="float64"),
            old_labels=old_rows[LABEL].to_numpy(dtype="int64"),
            old_scores=old_rows[POSITIVE_SCORE].to_numpy(dtype="float64"),
        )
    old = str(report.get("live_version"))
    if frame.empty:
        live = shadow = frame
    else:
        live = frame[(frame["route"] == ROUTE_LIVE) & (frame["version"] == old) & (frame["ts"] < end)]
        shadow = frame[(frame["route"] == ROUTE_PREVIEW) & (frame["version"] == version)]
    logged_live, logged_shadow = (keys_like(logged_predictions(frame, key=key), key, key_dtype) for frame in (live, shadow))
    _say_unkeyed(log, logged_live, key)
    pairs = paired_answers(logged_live.frame, logged_shadow.frame)
    answers = with_labels(spec, pairs, labels)
    return judge_shadow(
        rule,
        new_version=version,
        old_version=old,
        labels=answers[LABEL].to_numpy(dtype="int64"),
        new_scores=answers["shadow_score"].to_numpy(dtype="float64"),
        old_scores=answers[POSITIVE_SCORE].to_numpy(dtype="float64"),
    )


def paired_answers(live: pd.DataFrame, shadow: pd.DataFrame) -> pd.DataFrame:
    """Each live answer beside the shadow's answer to the same request row (``replay-<id>``, the same row): the live frame plus ``shadow_score``."""
    from mlops_airflow.core.logged_predictions import REPLAY_ID_PREFIX, SCORE

    if live.empty or shadow.empty:
        return live.iloc[:0].assign(shadow_score=[])
    replays = shadow[shadow["request_id"].str.startswith(REPLAY_ID_PREFIX)]
    replays = replays.assign(request_id=replays["request_id"].str.slice(len(REPLAY_ID_PREFIX)))
    # A request id a client sent twice, or a request replayed twice: the newest answer of each counts once.
    live = live.sort_values("ts").drop_duplicates(["request_id", "row"], keep="last")
    replays = replays.sort_values("ts").drop_duplicates(["request_id", "row"], keep="last")
    return live.merge(replays[["request_id", "row", SCORE]].rename(columns={SCORE: "shadow_score"}), on=["request_id", "row"], how="inner")


def _other_version(frame: pd.DataFrame, version: str) -> str:
    others = frame.loc[frame["version"] != version, "version"] if not frame.empty else frame
    return str(others.mode().iloc[0]) if len(others) else "unknown"


def _say_unkeyed(log: logging.Logger, logged: Any, key: str) -> None:
    if logged.unkeyed_requests or logged.unmatched_requests:
        log.warning(
            "%d answered requests carry no %r column (nor are one row with an X-Request-Id), %d answers do not hold one score per row: left out",
            logged.unkeyed_requests,
            key,
            logged.unmatched_requests,
        )


class ReleaseOutcomeOperator(FailFastTemplates, BaseOperator):
    """
    Judge each A/B test and shadow replay whose labels are now due, once: which version did better on live outcomes.

    Looks for versions of the model whose release strategy was ``ab`` or ``shadow`` and that have
    no outcome yet (tag ``mlops.release.outcome``). A release is judged on the run day by which the
    labels of its last day are due (``performance.label_delay_days``), on
    ``performance.metric`` with the promotion's comparison, margin and ``performance``'s confidence,
    resamples and ``min_labelled_rows`` (per version). The outcome is recorded on the new version
    (tag ``mlops.release.outcome``), in the log and as the ``release_outcome`` counter; a Failed
    outcome of the version that is now the champion is logged as a warning. Skipped when no
    release is due. Returns the outcomes judged (XCom).

    :param spec_path: path of the model spec YAML.
    :param run_day: the day the labels are judged by (templated).
    :param mlflow_conn_id: connection of the MLflow server.
    """

    template_fields: Sequence[str] = ("run_day",)

    def __init__(self, *, spec_path: str, run_day: str, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.run_day = run_day
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from mlops_airflow.constants import CHAMPION_ALIAS
        from mlops_airflow.core.performance_monitoring import PerformanceInputError
        from mlops_airflow.core.release_analysis import Verdict
        from mlops_airflow.core.release_outcomes import OutcomeRule
        from mlops_airflow.hooks.mlflow import MlflowHook
        from mlops_airflow.observability.metrics import RELEASE_OUTCOME, incr
        from mlops_airflow.operators.release_strategies import TAG_AB, TAG_SHADOW, TAG_STRATEGY

        spec = load_task_spec(self.spec_path)
        if spec.performance is None or spec.serving.inference_log.uri is None:
            raise AirflowSkipException(f"{spec.source} has no performance section or no inference log: no release outcomes to judge")
        day = as_date(self.run_day, "run_day")
        performance, promotion = spec.performance, spec.promotion
        rule = OutcomeRule(
            metric=performance.metric,
            comparison=promotion.comparison,
            margin=promotion.margin,
            confidence=performance.confidence,
            resamples=performance.bootstrap_resamples,
            min_rows=performance.min_labelled_rows,
            seed=promotion.seed,
        )
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        name = spec.registered_model_name
        judged, unreadable = [], []
        for strategy, tag in (("ab", TAG_AB), ("shadow", TAG_SHADOW)):
            for version in sorted(hook.search_versions_by_tag(name, TAG_STRATEGY, strategy), key=lambda v: int(v.version)):
                if TAG_OUTCOME in version.tags:
                    continue
                if tag not in version.tags:
                    self.log.info("%s v%s: its %s release recorded no %s (interrupted): nothing to judge", name, version.version, strategy, tag)
                    continue
                try:
                    report = json.loads(version.tags[tag])
                    period = release_period(strategy, report, tag)
                except (ValueError, TypeError) as err:
                    # It can never be judged: said once, on the version, and the others go on. An older record is expected
                    # after an upgrade; a broken one (a tag edited by hand) fails the task at the end, so that a person looks.
                    reason = str(err) if isinstance(err, ReleaseRecordWithoutTimes) else f"{tag} cannot be read: {err}"
                    marked = {"strategy": strategy, "verdict": UNJUDGEABLE, "reasons": [reason], "judged_on": day.isoformat()}
                    hook.set_version_tags(name, version.version, {TAG_OUTCOME: json.dumps(marked)})
                    self.log.warning("%s v%s: %s", name, version.version, reason)
                    if not isinstance(err, ReleaseRecordWithoutTimes):
                        unreadable.append(f"{name} v{version.version}: {reason}")
                    continue
                due = labels_due_on(period[1], performance.label_delay_days)
                if day < due:
                    self.log.info("%s v%s: the labels of its %s release are due by %s", name, version.version, strategy, due)
                    continue
                try:
                    outcome = judge_release(spec, strategy, str(version.version), report, period, rule, log=self.log)
                except PerformanceInputError as err:
                    raise AirflowFailException(f"{name} v{version.version}'s {strategy} release: {err}") from err
                record = {**outcome.as_dict(), "judged_on": day.isoformat(), "requests_from": period[0].isoformat(), "requests_until": period[1].isoformat()}
                hook.set_version_tags(name, version.version, {TAG_OUTCOME: json.dumps(record)})
                incr(RELEASE_OUTCOME, model=spec.name, strategy=strategy, verdict=str(outcome.verdict).lower())
                self.log.info("%s v%s against v%s on live outcomes (%s): %s", name, version.version, outcome.old_version, strategy, record)
                if outcome.verdict is Verdict.FAILED and (outcome.upper or 0.0) < 0 and CHAMPION_ALIAS in (version.aliases or []):
                    self.log.warning(
                        "%s v%s is the champion and did worse than v%s on live outcomes: %s", name, version.version, outcome.old_version, outcome.reasons
                    )
                judged.append(record)
        if unreadable:
            raise AirflowFailException(
                f"{len(unreadable)} release record(s) cannot be judged (marked {UNJUDGEABLE}; a repaired record is read again once its "
                f"{TAG_OUTCOME} tag is deleted): {'; '.join(unreadable)}"
            )
        if not judged:
            raise AirflowSkipException("no A/B test or shadow replay awaits its outcomes")
        return judged
