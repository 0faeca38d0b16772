"""The distributed end-to-end test's harness leaves nothing behind, even when a run of it was killed."""

from __future__ import annotations

import os
import socket

import pytest

pytestmark = pytest.mark.integration


def postgres_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not postgres_reachable(), reason="needs PostgreSQL on 127.0.0.1:5432")
def test_a_killed_runs_database_is_dropped_by_the_next_run_and_a_live_runs_is_kept():
    from distributed_stack import DATABASE_PREFIX, _postgres_admin, create_database, drop_database, drop_orphaned_databases

    orphan = f"{DATABASE_PREFIX}4194305_deadbeef"  # above Linux's largest pid: its run is certainly gone
    alive = f"{DATABASE_PREFIX}{os.getpid()}_cafebabe"
    try:
        create_database(orphan)
        create_database(alive)
        dropped = drop_orphaned_databases()
        names = {name for (name,) in _postgres_admin("SELECT datname FROM pg_database")}
        assert orphan in dropped
        assert orphan not in names
        assert alive in names
    finally:
        drop_database(orphan)
        drop_database(alive)
