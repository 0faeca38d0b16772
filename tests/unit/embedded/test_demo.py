"""The demo's timing split: how long tasks ran, parallel tasks counted once."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops_airflow.embedded.demo import busy_seconds

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def task(start: float, end: float | None) -> dict:
    return {
        "start_date": (BASE + dt.timedelta(seconds=start)).isoformat().replace("+00:00", "Z"),
        "end_date": end and (BASE + dt.timedelta(seconds=end)).isoformat(),
    }


@pytest.mark.parametrize(
    ("tasks", "window", "busy"),
    [
        ([task(0, 10), task(5, 15), task(20, 30)], (0, 25), 20.0),  # overlap counted once; clipped at the end
        ([task(0, 10), task(2, 4)], (0, 100), 10.0),  # one inside another
        ([task(-5, 5)], (0, 100), 5.0),  # started before the window
        ([task(0, None), {"start_date": None, "end_date": None}], (0, 100), 0.0),  # not finished, never ran
        ([], (0, 100), 0.0),
    ],
)
def test_busy_seconds(tasks, window, busy):
    start, end = ((BASE + dt.timedelta(seconds=s)).timestamp() for s in window)
    assert busy_seconds(tasks, start, end) == pytest.approx(busy)
