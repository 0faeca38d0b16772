"""The embedded stack's PostgreSQL: a real cluster started, used and stopped, and the checks before it starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mlops_airflow.embedded.postgres import DATABASE_ENV, EmbeddedPostgres, PostgresError, database_kind


@pytest.fixture
def reachable_folder():
    """Pytest's temporary folders are private to their owner; run by root, PostgreSQL runs as nobody and must pass."""
    folder = Path(tempfile.mkdtemp(prefix="mlops-pg-test-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_database_is_postgres_unless_sqlite_is_asked_for():
    assert database_kind({}) == "postgres"
    assert database_kind({DATABASE_ENV: "sqlite"}) == "sqlite"
    with pytest.raises(ValueError, match=f"{DATABASE_ENV}='mysql' is not one of postgres, sqlite"):
        database_kind({DATABASE_ENV: "mysql"})


def test_the_socket_folder_is_short_and_one_per_state_folder(tmp_path):
    deep = tmp_path / ("very-long-folder-name-" * 8)
    assert len(str(EmbeddedPostgres(deep).socket_dir / ".s.PGSQL.5432")) < 100
    assert EmbeddedPostgres(deep).socket_dir == EmbeddedPostgres(deep).socket_dir != EmbeddedPostgres(tmp_path).socket_dir
    assert EmbeddedPostgres(deep).url("airflow") == f"postgresql+psycopg2://postgres@/airflow?host={EmbeddedPostgres(deep).socket_dir}"


def test_run_by_root_a_private_state_folder_is_refused_before_anything_starts(tmp_path, reachable_folder):
    private = tmp_path / "private"  # pytest's folders are 0700
    private.mkdir()
    private.chmod(0o700)
    postgres = EmbeddedPostgres(private / "state")
    if os.geteuid() == 0:
        with pytest.raises(PostgresError, match=r"runs as nobody, who cannot reach .*MLOPS_STATE_DIR.*MLOPS_EMBEDDED_DATABASE=sqlite"):
            postgres.prepare()
        assert not postgres.data_dir.exists()
    else:
        postgres.check_reachable()  # not root: the server runs as this user, who owns the folder
    (reachable_folder / "state").mkdir()
    EmbeddedPostgres(reachable_folder / "state").check_reachable()


def test_a_cluster_is_created_once_serves_both_databases_on_its_socket_and_stops(reachable_folder):
    postgres = EmbeddedPostgres(reachable_folder / "state")
    postgres.prepare()
    assert (postgres.data_dir / "PG_VERSION").exists()
    assert postgres.socket_dir.stat().st_mode & 0o777 == 0o700
    version = (postgres.data_dir / "PG_VERSION").stat().st_mtime
    postgres.prepare()  # once: a second prepare keeps the cluster
    assert (postgres.data_dir / "PG_VERSION").stat().st_mtime == version
    server = subprocess.Popen(postgres.command(), preexec_fn=postgres.demote(), cwd=postgres.data_dir.parent, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not postgres.healthy():
            assert server.poll() is None, "postgres exited"
            assert time.monotonic() < deadline, "postgres did not answer within 30 s"
            time.sleep(0.2)
        postgres.ensure_databases()
        postgres.ensure_databases()  # idempotent
        names = {row[0] for row in postgres._execute("SELECT datname FROM pg_database")}
        assert {"airflow", "mlflow"} <= names
        assert postgres._execute("SHOW listen_addresses") == [("",)]  # no TCP port at all
    finally:
        server.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown, as the stack's `down` sends
        assert server.wait(timeout=30) == 0
    shutil.rmtree(postgres.socket_dir, ignore_errors=True)
