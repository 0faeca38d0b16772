"""Constants and helpers shared by the tests (plain imports: tests/ is on sys.path)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# The window every test that trains uses: 21 days of small partitions ending here.
DATA_END = dt.date(2026, 3, 1)
DATA_DAYS = 21
ROWS_PER_DAY = 300


def task_states(dag_run) -> dict[str, str]:
    """``{task_id: state}`` of a finished dag.test() run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances(session=session)}
