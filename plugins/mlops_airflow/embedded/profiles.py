"""Workload profiles of the embedded stack: what its copies of the model specs change.

``demo`` (the default) is what `make demo` shows a person: the specs as written, but for
the weekly retrain. ``quick`` is for test stacks on a busy machine: the old colour drains
for a second instead of twenty, the smoke test's latency gate is loose (a loaded
2-core machine answers a burst slowly; the golden-row and error-rate checks stay exact),
and each colour runs one model-server worker (each worker is a process that imports
MLflow and scikit-learn and loads the model: on 2 busy cores, seconds of every deploy).
Choose one with ``MLOPS_EMBEDDED_PROFILE``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

PROFILE_ENV = "MLOPS_EMBEDDED_PROFILE"
DEFAULT_PROFILE = "demo"


def _demo(raw: dict[str, Any]) -> None:
    """On a laptop a weekly retrain that fires when its DAG is first unpaused trains on
    whatever data happens to be there; here retrains start by hand or by drift."""
    raw.setdefault("schedules", {})["retrain"] = None


def _quick(raw: dict[str, Any]) -> None:
    _demo(raw)
    serving = raw.setdefault("serving", {})
    serving["drain_seconds"] = 1
    serving.setdefault("smoke", {})["max_p95_ms"] = 30_000
    serving.setdefault("capacity", {})["workers"] = 1


PROFILES: Mapping[str, Callable[[dict[str, Any]], None]] = {"demo": _demo, "quick": _quick}


def profile_name(environ: Mapping[str, str]) -> str:
    """The profile ``environ`` asks for; a name that is not a profile is an error that lists them."""
    name = environ.get(PROFILE_ENV, "").strip() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r} is not a profile; choose one of {', '.join(sorted(PROFILES))}")
    return name


def apply_profile(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (a parsed spec) changed in place as profile ``name`` says; returned for chaining."""
    PROFILES[name](raw)
    return raw
