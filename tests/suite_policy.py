"""How the suite runs: file order across xdist workers, no silent skips in CI, the closing summary.

Loaded from tests/conftest.py (``pytest_plugins``), so it applies to ``make test`` and to any
``pytest`` run in this checkout.

- **Order.** ``make test`` spreads whole files over worker processes (``--dist loadfile``);
  a worker takes the next file from one queue, and xdist queues a second file behind the
  first on every worker that has two tests or fewer left. The two end-to-end tests take the
  longest (minutes each, mostly waiting on a scheduler), so they start first, on workers of
  their own; the remaining workers start on the heaviest other files; one short file waits
  behind each end-to-end test; the rest follow, heaviest first, so the run does not end with
  one worker still busy on a long file. Every worker sorts its collection the same way,
  which xdist requires; xdist's own largest-file-first order (``--loadscope-reorder``) is
  turned off for this one.
- **Skips.** Under ``CI=true`` a skipped test or module fails the run unless its node id is
  in :data:`CI_ALLOWED_SKIPS`, with the reason. Outside CI a skip keeps its message.
- **Summary.** The run ends with its wall time and the seed of the sampled tests (pytest's
  ``--durations=15`` from pyproject prints the 15 slowest).
"""

from __future__ import annotations

import os
import time

import pytest
from sampling import FULL_VARIABLE, SEED_VARIABLE, full, session_seed

# Started first, one per worker.
LONG_FIRST = ("tests/e2e/test_distributed.py", "tests/e2e/test_demo.py")
# Short files that wait behind the end-to-end tests (xdist queues a second file on every worker).
QUICK_BEHIND_LONG = ("tests/deploy/test_compose.py", "tests/unit/specs/test_parsing_operations.py")
# The heaviest of the rest, heaviest first (seconds measured on this 2-core machine).
HEAVY_NEXT = (
    "tests/integration/test_kill_release_tasks.py",
    "tests/integration/test_model_dags.py",
    "tests/integration/test_kill_idempotency.py",
    "tests/integration/test_promotion_concurrency.py",
    "tests/integration/test_drift_monitor.py",
    "tests/integration/test_local_serving.py",
    "tests/integration/test_secrets_canary.py",
    "tests/integration/test_mlflow_auth.py",
    "tests/integration/test_training_mlflow_server.py",
    "tests/integration/test_promotion_candidates.py",
)


def file_order(workers: int) -> dict[str, int]:
    """Rank of each named file for ``workers`` worker processes (unnamed files come after, in collection order)."""
    starting = HEAVY_NEXT[: max(0, workers - len(LONG_FIRST))]
    order = LONG_FIRST + starting + QUICK_BEHIND_LONG + HEAVY_NEXT[len(starting) :]
    return {path: rank for rank, path in enumerate(order)}


# node id (or module path) -> why it may skip under CI. Keep this empty unless a test truly
# cannot run on CI's machine; a skip elsewhere fails the run.
CI_ALLOWED_SKIPS: dict[str, str] = {}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_configure(config: pytest.Config) -> None:
    # One seed for the whole session, set before xdist starts its workers so they all share it.
    session_seed()
    config.stash[_started] = time.monotonic()
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.option.loadscopereorder = False  # keep FILE_ORDER, not xdist's largest-file-first


_started = pytest.StashKey[float]()
# Tests report lines for the closing summary as user properties under these names (they
# travel from xdist workers to the controller with the test's report).
SUMMARY_PROPERTIES = {"dag_parse_ms": "DAG file parse times (fresh interpreter, network blocked; CPU: best of up to five)"}


def pytest_runtest_logreport(report) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name in SUMMARY_PROPERTIES:
            _lines.setdefault(name, []).append(str(value))


_lines: dict[str, list[str]] = {}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # every worker alike; the sort is stable within a file
        ranks = file_order(int(config.workerinput["workercount"]))
        items.sort(key=lambda item: ranks.get(item.nodeid.split("::", 1)[0], len(ranks)))


def _allowed(nodeid: str) -> bool:
    return nodeid in CI_ALLOWED_SKIPS or nodeid.split("::", 1)[0] in CI_ALLOWED_SKIPS


def _fail_the_skip(report, nodeid: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which fails the run: {reason} ({nodeid} is not in CI_ALLOWED_SKIPS of tests/suite_policy.py)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail") and not _allowed(item.nodeid):
        _fail_the_skip(report, item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    if in_ci() and report.skipped and not _allowed(collector.nodeid):
        _fail_the_skip(report, collector.nodeid)
    return report


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    wall = time.monotonic() - config.stash[_started]
    for name, title in SUMMARY_PROPERTIES.items():
        if _lines.get(name):
            terminalreporter.write_sep("-", title)
            for line in sorted(_lines[name]):
                terminalreporter.write_line(line)
    terminalreporter.write_sep("=", "suite summary")
    terminalreporter.write_line(f"wall time: {wall:.0f} s ({wall / 60:.1f} min); the 15 slowest tests are listed above")
    cases = f"every case ({FULL_VARIABLE}=1)" if full() else "a sample of their cases"
    terminalreporter.write_line(f"sampled tests ran {cases} with {SEED_VARIABLE}={session_seed()}; set it to replay this run's sample")
