"""Parsing the sections a model runs by once trained: serving (local, Docker, Kubernetes), drift and schedules."""

from __future__ import annotations

import datetime as dt
import re

from mlops_airflow.settings import SERVING_BACKEND_ENV, SERVING_PORT_ENV, serving_backend_override, serving_port
from mlops_airflow.specs.model import (
    DAY_SECONDS,
    MAX_BACKFILL_DAYS,
    MAX_DAYS,
    MAX_ROWS,
    RELEASE_STRATEGIES,
    SERVING_BACKENDS,
    WEEK_MINUTES,
    YEAR_HOURS,
    ABSpec,
    CanarySpec,
    CapacitySpec,
    DockerServingSpec,
    DriftSpec,
    FeatureSpec,
    GatewayRef,
    InferenceLogSpec,
    LocalServingSpec,
    ModelSpecError,
    ReleaseSpec,
    ScheduleSpec,
    ServingSpec,
    ShadowSpec,
    SmokeSpec,
    shown,
)
from mlops_airflow.specs.reading import _cron, _Section, _uri


def _parse_serving(section: _Section, *, data_uri: str) -> ServingSpec:
    defaults = ServingSpec()
    backend = section.choice("backend", SERVING_BACKENDS, default=defaults.backend)
    override = serving_backend_override()
    if override:
        if override not in SERVING_BACKENDS:
            raise ModelSpecError(section.source, "serving.backend", f"{SERVING_BACKEND_ENV}={shown(override)} is not one of {list(SERVING_BACKENDS)}")
        backend = override
    smoke_section = section.section("smoke", required=False)
    smoke = SmokeSpec(
        golden_rows=smoke_section.integer("golden_rows", SmokeSpec.golden_rows, minimum=1, maximum=10_000),
        burst_requests=smoke_section.integer("burst_requests", SmokeSpec.burst_requests, minimum=1, maximum=10_000),
        max_p95_ms=float(smoke_section.number("max_p95_ms", SmokeSpec.max_p95_ms, minimum=1.0, maximum=600_000.0)),
        max_error_rate=float(smoke_section.number("max_error_rate", SmokeSpec.max_error_rate, minimum=0.0, maximum=1.0)),
        tolerance=float(smoke_section.number("tolerance", SmokeSpec.tolerance, minimum=0.0, maximum=1.0)),
        concurrency=smoke_section.integer("concurrency", SmokeSpec.concurrency, minimum=1, maximum=256),
    )
    smoke_section.finish()
    k8s = section.section("kubernetes", required=False)
    release = _parse_release(section.section("release", required=False))
    spec = ServingSpec(
        backend=backend,
        drain_seconds=section.integer("drain_seconds", defaults.drain_seconds, minimum=0, maximum=DAY_SECONDS),
        ready_timeout_seconds=section.integer("ready_timeout_seconds", defaults.ready_timeout_seconds, minimum=1, maximum=DAY_SECONDS),
        smoke=smoke,
        namespace=k8s.string("namespace", defaults.namespace),
        replicas=k8s.integer("replicas", defaults.replicas, minimum=1, maximum=100),
        port=k8s.integer("port", defaults.port, minimum=1, maximum=65535),
        kubernetes_conn_id=k8s.string("conn_id", defaults.kubernetes_conn_id),
        gateway=_parse_gateway(k8s),
        docker=_parse_docker_serving(section.section("docker", required=False)),
        local=_parse_local_serving(section.section("local", required=False)),
        capacity=_parse_capacity(section.section("capacity", required=False)),
        release=release,
        inference_log=_parse_inference_log(section.section("inference_log", required=False), data_uri, needed=release.strategy != "blue_green"),
    )
    k8s.finish()
    if spec.release.strategy != "blue_green":
        if spec.inference_log.uri is None:
            section.fail("release.strategy", f"{spec.release.strategy} is analysed on the inference log: serving.inference_log.sample_rate must be above 0")
        if spec.backend == "kubernetes":
            override = f" ({SERVING_BACKEND_ENV} chose it)" if serving_backend_override() else ""
            if spec.release.strategy == "ab":
                section.fail(
                    "release.strategy",
                    f"an A/B test keeps each client on its version by a cookie, and the Gateway API's standard HTTPRoute has no session "
                    f"persistence: kubernetes serving{override} releases blue_green, canary or shadow",
                )
            if spec.gateway is None:
                section.fail(
                    "release.strategy",
                    f"{spec.release.strategy} on kubernetes serving{override} needs serving.kubernetes.gateway: an HTTPRoute of that Gateway "
                    "carries the live traffic, marks it live in the inference log and holds a canary's weights",
                )
    section.finish()
    return spec


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# The Gateway API's patterns: an object name and a section name are DNS subdomains (253), a namespace a DNS label (63).
_SUBDOMAIN_HINT = "a DNS subdomain: lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit"
_GATEWAY_NAMES = {
    "name": (re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"), 253, _SUBDOMAIN_HINT),
    "namespace": (re.compile(_DNS_LABEL), 63, "a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"),
    "section_name": (re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"), 253, _SUBDOMAIN_HINT),
}


def _parse_gateway(k8s: _Section) -> GatewayRef | None:
    """``serving.kubernetes.gateway``: ``name``, and optionally ``namespace`` and ``section_name``; absent: no HTTPRoute."""
    if k8s.raw.get("gateway") is None:
        k8s.seen.add("gateway")
        return None
    section = k8s.section("gateway")
    values = {key: section.string(key, required=key == "name") for key in _GATEWAY_NAMES}
    for key, value in values.items():
        pattern, longest, what = _GATEWAY_NAMES[key]
        if value is not None and (len(value) > longest or not pattern.fullmatch(value)):
            section.fail(key, f"must be {what}; at most {longest} characters, got {value!r}")
    section.finish()
    return GatewayRef(**values)


def _parse_inference_log(section: _Section, data_uri: str, *, needed: bool) -> InferenceLogSpec:
    """Off unless the spec has the section, or a canary or shadow release needs it (then every request is logged)."""
    defaults = InferenceLogSpec(uri=None)
    given = bool(section.raw)
    sample_rate = float(section.number("sample_rate", defaults.sample_rate if given or needed else 0.0, minimum=0.0, maximum=1.0))
    if "uri" in section.raw:
        raw_uri = section.raw["uri"]
        if not isinstance(raw_uri, str) or not raw_uri.strip():
            section.fail("uri", f"must be a non-empty path or URI, got {shown(raw_uri)}")
        uri = _uri(section, "uri")
    else:  # beside the model's partitions, in a "_" folder that readers of the data skip
        uri = f"{data_uri}/_inference_log"
    if "@" in uri.split("://", 1)[-1].split("/", 1)[0]:
        section.fail("uri", "must not carry credentials (user:secret@): the servers get them from their environment or role")
    spec = InferenceLogSpec(
        uri=uri if sample_rate > 0 else None,
        sample_rate=sample_rate,
        flush_seconds=float(section.number("flush_seconds", defaults.flush_seconds, minimum=0.05, maximum=3600.0)),
    )
    section.finish()
    return spec


def _parse_release(section: _Section) -> ReleaseSpec:
    strategy = section.choice("strategy", RELEASE_STRATEGIES, default=ReleaseSpec.strategy)
    canary_section = section.section("canary", required=False)
    steps = canary_section._get("steps", list(CanarySpec.steps), False)
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 100 for s in steps)
        or steps != sorted(set(steps))
    ):
        canary_section.fail("steps", f"must be rising whole percentages between 1 and 99 (100 follows the last step), got {shown(steps)}")
    canary = CanarySpec(
        steps=tuple(steps),
        step_seconds=canary_section.integer("step_seconds", CanarySpec.step_seconds, minimum=1, maximum=DAY_SECONDS),
        max_error_rate=float(canary_section.number("max_error_rate", CanarySpec.max_error_rate, minimum=0.0, maximum=1.0)),
        max_p95_ms=float(canary_section.number("max_p95_ms", CanarySpec.max_p95_ms, minimum=1.0, maximum=600_000.0)),
        max_output_shift=float(canary_section.number("max_output_shift", CanarySpec.max_output_shift, minimum=0.0, maximum=1.0)),
        min_requests=canary_section.integer("min_requests", CanarySpec.min_requests, minimum=1, maximum=MAX_ROWS),
    )
    canary_section.finish()
    shadow_section = section.section("shadow", required=False)
    shadow = ShadowSpec(
        window_minutes=shadow_section.integer("window_minutes", ShadowSpec.window_minutes, minimum=1, maximum=WEEK_MINUTES),
        max_requests=shadow_section.integer("max_requests", ShadowSpec.max_requests, minimum=1, maximum=1_000_000),
        concurrency=shadow_section.integer("concurrency", ShadowSpec.concurrency, minimum=1, maximum=256),
        min_requests=shadow_section.integer("min_requests", ShadowSpec.min_requests, minimum=1, maximum=1_000_000),
        min_agreement=float(shadow_section.number("min_agreement", ShadowSpec.min_agreement, minimum=0.0, maximum=1.0)),
        max_error_rate=float(shadow_section.number("max_error_rate", ShadowSpec.max_error_rate, minimum=0.0, maximum=1.0)),
        max_p95_ms=float(shadow_section.number("max_p95_ms", ShadowSpec.max_p95_ms, minimum=1.0, maximum=600_000.0)),
    )
    if shadow.min_requests > shadow.max_requests:
        shadow_section.fail("min_requests", f"({shadow.min_requests}) is more than max_requests ({shadow.max_requests}): the replay could never be judged")
    shadow_section.finish()
    ab_section = section.section("ab", required=False)
    ab = ABSpec(
        percent=ab_section.integer("percent", ABSpec.percent, minimum=1, maximum=99),
        cookie=ab_section.string("cookie", ABSpec.cookie),
        duration_minutes=float(ab_section.number("duration_minutes", ABSpec.duration_minutes, minimum=0.01, maximum=WEEK_MINUTES * 4)),
        max_error_rate=float(ab_section.number("max_error_rate", ABSpec.max_error_rate, minimum=0.0, maximum=1.0)),
        max_p95_ms=float(ab_section.number("max_p95_ms", ABSpec.max_p95_ms, minimum=1.0, maximum=600_000.0)),
        min_requests=ab_section.integer("min_requests", ABSpec.min_requests, minimum=1, maximum=MAX_ROWS),
    )
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(ab.cookie)):
        ab_section.fail("cookie", f"must be a cookie name of letters, digits, '_' and '-' (at most 64), got {shown(ab.cookie)}")
    ab_section.finish()
    release = ReleaseSpec(
        strategy=strategy,
        canary=canary,
        shadow=shadow,
        ab=ab,
        decision_timeout_hours=float(section.number("decision_timeout_hours", ReleaseSpec.decision_timeout_hours, minimum=0.001, maximum=YEAR_HOURS)),
    )
    section.finish()
    return release


def _parse_capacity(section: _Section) -> CapacitySpec:
    defaults = CapacitySpec()
    workers = section.integer("workers", 0, minimum=0, maximum=256)
    spec = CapacitySpec(
        workers=workers or None,  # 0 or absent: one per CPU where the server runs
        max_pending=section.integer("max_pending", defaults.max_pending, minimum=1, maximum=100_000),
        max_batch_rows=section.integer("max_batch_rows", defaults.max_batch_rows, minimum=1, maximum=1_000_000),
        max_wait_seconds=float(section.number("max_wait_seconds", defaults.max_wait_seconds, minimum=0.001, maximum=600.0)),
    )
    section.finish()
    return spec


def _admin_address(section: _Section, key: str, default: str) -> str:
    """``unix:/absolute/path`` or ``http(s)://host[:port]`` with no path."""
    import urllib.parse

    value = section.string(key, default)
    if value.startswith("unix:"):
        if not value[len("unix:") :].startswith("/"):
            section.fail(key, f"must be unix:/absolute/path or http(s)://host:port, got {shown(value)}")
        return value
    try:
        parsed = urllib.parse.urlsplit(value)
        ok = parsed.scheme in {"http", "https"} and bool(parsed.hostname) and parsed.path in {"", "/"} and not parsed.query
        parsed.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        ok = False
    if not ok:
        section.fail(key, f"must be unix:/absolute/path or http(s)://host:port, got {shown(value)}")
    return value.rstrip("/")


def _parse_docker_serving(section: _Section) -> DockerServingSpec:
    defaults = DockerServingSpec()
    spec = DockerServingSpec(
        image=section.string("image", defaults.image),
        network=section.string("network", defaults.network),
        base_url=section.string("base_url", defaults.base_url),
        router_admin_url=_admin_address(section, "router_admin_url", defaults.router_admin_url),
        router_host=section.string("router_host", defaults.router_host),
        live_port=section.integer("live_port", defaults.live_port, minimum=1, maximum=65535),
        container_port=section.integer("container_port", defaults.container_port, minimum=1, maximum=65535),
    )
    section.finish()
    return spec


def _environment_port(section: _Section, key: str, default: int) -> int:
    """``MLOPS_SERVING_<COLOUR>_PORT`` when set (the embedded stack's and the tests' default), else ``default``."""
    variable = SERVING_PORT_ENV[key]
    raw = serving_port(key)
    if raw is None:
        return default
    if not raw.isascii() or not raw.strip().isdigit() or not 1 <= int(raw) <= 65535:
        raise ModelSpecError(section.source, f"{section.path}.{key}", f"{variable}={shown(raw)} is not a port (1-65535)")
    return int(raw)


def _parse_local_serving(section: _Section) -> LocalServingSpec:
    defaults = LocalServingSpec()
    if section.raw.get("live_port") is not None:
        live = section.integer("live_port", minimum=1, maximum=65533)
        blue_default, green_default = live + 1, live + 2
    else:
        live = _environment_port(section, "live_port", defaults.live_port)
        blue_default = _environment_port(section, "blue_port", defaults.blue_port)
        green_default = _environment_port(section, "green_port", defaults.green_port)
    spec = LocalServingSpec(
        live_port=live,
        blue_port=section.integer("blue_port", blue_default, minimum=1, maximum=65535),
        green_port=section.integer("green_port", green_default, minimum=1, maximum=65535),
        explicit=any(section.raw.get(key) is not None for key in ("live_port", "blue_port", "green_port")),
    )
    if len(set(spec.ports)) != 3:
        section.fail("", f"live_port, blue_port and green_port must be three different ports, got {list(spec.ports)}")
    section.finish()
    return spec


def _parse_drift(section: _Section, features: FeatureSpec) -> DriftSpec:
    defaults = DriftSpec()
    chosen = section.string_list("features")
    unknown = [c for c in chosen if c not in features.columns]
    if unknown:
        section.fail("features", f"must name features of the spec {list(features.columns)}; got {unknown}")
    window_days = section.integer("window_days", defaults.window_days, minimum=1, maximum=MAX_DAYS)
    lookback_days = section.integer("lookback_days", defaults.lookback_days, minimum=1, maximum=MAX_DAYS)
    if lookback_days < window_days:
        section.fail("lookback_days", f"must be at least window_days ({window_days}), got {lookback_days}")
    max_backfill_days = section.integer("max_backfill_days", defaults.max_backfill_days, minimum=1, maximum=MAX_BACKFILL_DAYS)
    if max_backfill_days < lookback_days:
        # A drift's backfill runs from its onset, which lies up to lookback_days back.
        section.fail("max_backfill_days", f"must be at least lookback_days ({lookback_days}), got {max_backfill_days}")
    alpha = section.number("alpha", defaults.alpha, minimum=1e-6, maximum=0.5)
    spec = DriftSpec(
        features=chosen,
        window_days=window_days,
        lookback_days=lookback_days,
        alpha=float(alpha),
        min_effect=float(section.number("min_effect", defaults.min_effect, minimum=0.0, maximum=1.0)),
        min_samples=section.integer("min_samples", defaults.min_samples, minimum=1, maximum=MAX_ROWS),
        check_interval_minutes=section.integer("check_interval_minutes", defaults.check_interval_minutes, minimum=1, maximum=24 * 60),
        watch_interval_seconds=section.integer("watch_interval_seconds", defaults.watch_interval_seconds, minimum=0, maximum=24 * 3600),
        timeout_minutes=section.integer("timeout_minutes", defaults.timeout_minutes, minimum=0, maximum=WEEK_MINUTES),
        cooldown_hours=float(section.number("cooldown_hours", defaults.cooldown_hours, minimum=0.0, maximum=YEAR_HOURS)),
        report=section.boolean("report", defaults.report),
        max_backfill_days=max_backfill_days,
        multivariate=section.boolean("multivariate", defaults.multivariate),
    )
    section.finish()
    return spec


def _parse_schedules(section: _Section) -> ScheduleSpec:
    start = section._get("start_date", dt.date(2026, 1, 1), False)
    if isinstance(start, str):
        try:
            start = dt.date.fromisoformat(start)
        except ValueError:
            section.fail("start_date", f"must be a date (YYYY-MM-DD), got {shown(start)}")
    if isinstance(start, dt.datetime) or not isinstance(start, dt.date):
        section.fail("start_date", f"must be a date (YYYY-MM-DD), got {shown(start)}")
    spec = ScheduleSpec(
        start_date=start,
        retrain=_cron(section, "retrain", "0 3 * * 1"),
        drift_monitor=_cron(section, "drift_monitor", "@hourly"),
        batch_score=_cron(section, "batch_score", "@daily"),
        performance_monitor=_cron(section, "performance_monitor", "@daily"),
        retrain_deadline_minutes=_deadline_minutes(section, "retrain_deadline_minutes", ScheduleSpec.retrain_deadline_minutes),
        rollback_deadline_minutes=_deadline_minutes(section, "rollback_deadline_minutes", ScheduleSpec.rollback_deadline_minutes),
    )
    section.finish()
    return spec


def _deadline_minutes(section: _Section, key: str, default: float | None) -> float | None:
    """Minutes from a run's queueing to its deadline (at least 0.1, at most a week); ``null`` turns the deadline off."""
    if key in section.raw and section.raw[key] is None:
        section.seen.add(key)
        return None
    value = section.number(key, default, minimum=0.1, maximum=float(WEEK_MINUTES))
    return None if value is None else float(value)


# libyaml's safe loader when PyYAML was built with it (every wheel is): DAG files load every
# spec at parse time, and the pure-Python loader took ~40 ms of a ~100 ms parse.
