"""The embedded stack: PostgreSQL, Airflow standalone and an MLflow server, each in its own process group.

Everything lives under one git-ignored state folder (``.local/`` by default): logs, the
PostgreSQL cluster (Airflow's metadata database and MLflow's store, see
:mod:`mlops_airflow.embedded.postgres`; SQLite with ``MLOPS_EMBEDDED_DATABASE=sqlite``),
MLflow artifacts, the demo data and ``stack.json``, which records what was started. ``up`` is idempotent (a healthy stack is reused); ``down`` ends only the
process groups recorded there, and only processes that carry this stack's marker in
their environment, so a recycled process id is never mistaken for ours.

Over 400 lines because it is one lifecycle (start in order, check, restore serving, stop in
reverse) over four services; the configuration, the owner's watchdog and PostgreSQL are apart.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlops_airflow.core.model_loading import SAFE_MODEL_ENV
from mlops_airflow.embedded.config import SETTINGS_FILE, STACK_MARKER_ENV, STATE_FILE, StackConfig, StackError, inherited_env
from mlops_airflow.embedded.postgres import MLFLOW_DB, EmbeddedPostgres
from mlops_airflow.settings import SERVING_STATE_DIR_ENV, SPECS_DIR_ENV


@dataclass
class Service:
    """One long-running command of the stack and how to tell it is healthy."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    is_healthy: Callable[[], bool]
    start_timeout: float
    cwd: Path
    path_first: tuple[Path, ...] = ()  # folders searched before this venv's for the commands it starts
    prepare: Callable[[], None] | None = None  # before it starts (PostgreSQL: initdb once)
    when_healthy: Callable[[], None] | None = None  # once it answers, started or reused (PostgreSQL: the databases)
    preexec: Callable[[], None] | None = None  # in the child before exec (PostgreSQL run by root: become nobody)


@dataclass
class RunningService:
    name: str
    pid: int
    pgid: int
    log: str
    port: int


@dataclass
class StackState:
    services: dict[str, RunningService] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StackState:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        return cls({name: RunningService(**svc) for name, svc in raw.get("services", {}).items()})

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"services": {n: vars(s) for n, s in self.services.items()}}, indent=2))
        temporary.replace(path)


def _http_ok(url: str, timeout: float = 3.0) -> tuple[bool, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs we build
            return 200 <= response.status < 300, response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return False, b""


# How each service is asked to stop (default SIGTERM). PostgreSQL's SIGTERM waits for every
# client to disconnect; SIGINT is its "fast" shutdown: clients are disconnected, data kept.
_STOP_SIGNALS = {"postgres": signal.SIGINT}


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _proc_members(pgid: int, marker: str) -> list[int]:
    """Live processes of process group ``pgid`` that carry this stack's marker (Linux /proc)."""
    members = []
    needle = f"{STACK_MARKER_ENV}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = stat[stat.rindex(")") + 2 :].split()
            state, process_group = fields[0], int(fields[2])
            if process_group != pgid or state == "Z":
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                members.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return members


def group_members(pgid: int, marker: str) -> list[int]:
    """Our live processes in ``pgid``. Without /proc, trust the group if it exists at all."""
    if Path("/proc/self/stat").exists():
        return _proc_members(pgid, marker)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    return [pgid]


class EmbeddedStack:
    """Start, check and stop the embedded Airflow + MLflow stack."""

    def __init__(self, config: StackConfig, *, echo: Callable[[str], None] = print) -> None:
        self.config = config
        self._started: dict[str, subprocess.Popen] = {}
        self.echo = echo
        self.state_path = config.state_dir / STATE_FILE

    # -- configuration -------------------------------------------------------------

    def _secret(self, name: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
        """A secret generated once per stack and kept (mode 600) under the state folder."""
        path = self.config.state_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(make())
        return path.read_text().strip()

    def admin_password(self) -> str:
        """The admin's password, known before Airflow starts: the one in Airflow's simple auth
        manager passwords file if there is one, else generated once and written there (mode 600)."""
        path = self.config.admin_password_file
        known = self.config.admin_password()
        if known:
            return known
        password = self._secret("admin_password")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps({"admin": password}))
        return password

    def airflow_api_connection(self) -> str:
        """``airflow_api``: the drift backfill creates backfills through the REST API as this user."""
        return json.dumps({"conn_type": "http", "host": self.config.airflow_url, "login": "admin", "password": self.admin_password()})

    def mlflow_connection(self) -> str:
        # The lock secret seals the registry's promotion lock (mlops_airflow.hooks.registry_lock).
        extra = {"lock_secret": self._secret("lock_secret")}
        return json.dumps({"conn_type": "http", "host": self.config.host, "port": self.config.mlflow_port, "schema": "http", "extra": extra})

    def airflow_env(self) -> dict[str, str]:
        """Environment of every Airflow process: this checkout's dags and plugins, demo settings."""
        cfg = self.config
        return {
            "AIRFLOW_HOME": str(cfg.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.repo_root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(cfg.repo_root / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cfg.airflow_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": self._secret("fernet_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()),
            "AIRFLOW__API__HOST": cfg.host,
            "AIRFLOW__API__PORT": str(cfg.airflow_port),
            "AIRFLOW__API__BASE_URL": cfg.airflow_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(cfg.worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(cfg.trigger_log_port),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            # Airflow binds the scheduler's health check to every interface by default.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": cfg.host,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Metrics (Airflow's and ours) go to statsd on loopback; `make demo` listens there.
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": cfg.host,
            "AIRFLOW__METRICS__STATSD_PORT": str(cfg.statsd_port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": self.mlflow_connection(),
            "AIRFLOW_CONN_AIRFLOW_API": self.airflow_api_connection(),
            "MLOPS_DATA_ROOT": str(cfg.data_root),
            SERVING_STATE_DIR_ENV: str(cfg.serving_dir),
            "MLOPS_SERVING_LIVE_PORT": str(cfg.serving_ports.live),
            "MLOPS_SERVING_BLUE_PORT": str(cfg.serving_ports.blue),
            "MLOPS_SERVING_GREEN_PORT": str(cfg.serving_ports.green),
            SPECS_DIR_ENV: str(cfg.specs_dir),
            "NO_PROXY": "*",
            **({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url("airflow")} if cfg.database == "postgres" else {}),
        }

    @property
    def postgres(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.config.state_dir)

    def services(self) -> list[Service]:
        cfg = self.config
        bin_dir = Path(sys.executable).parent
        mlflow = Service(
            name="mlflow",
            command=[
                str(bin_dir / "mlflow"),
                "server",
                "--backend-store-uri",
                self.postgres.url(MLFLOW_DB) if cfg.database == "postgres" else f"sqlite:///{cfg.mlflow_dir / 'mlflow.db'}",
                "--artifacts-destination",
                str(cfg.mlflow_dir / "artifacts"),
                "--serve-artifacts",
                "--host",
                cfg.host,
                "--port",
                str(cfg.mlflow_port),
                "--workers",
                "1",
            ],
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            port=cfg.mlflow_port,
            is_healthy=lambda: _http_ok(f"{cfg.mlflow_url}/health")[0],
            start_timeout=cfg.mlflow_start_timeout,
            cwd=cfg.mlflow_dir,
            # The models come from MLflow; restored before Airflow starts, so no release of the
            # scheduler's can change a model's serving state while it is being restored.
            when_healthy=self.restore_serving,
        )
        airflow = Service(
            name="airflow",
            command=[str(bin_dir / "airflow"), "standalone"],
            env=self.airflow_env(),
            path_first=(self.components_bin_dir,),
            port=cfg.airflow_port,
            is_healthy=self.airflow_healthy,
            start_timeout=cfg.airflow_start_timeout,
            cwd=cfg.airflow_home,
        )
        if cfg.database != "postgres":
            return [mlflow, airflow]
        postgres = Service(
            name="postgres",
            command=self.postgres.command(),
            env={},
            port=0,  # a Unix socket only
            is_healthy=self.postgres.healthy,
            start_timeout=60.0,
            cwd=self.postgres.data_dir.parent,
            prepare=self.postgres.prepare,
            when_healthy=self.postgres.ensure_databases,
            preexec=self.postgres.demote(),
        )
        return [postgres, mlflow, airflow]

    def airflow_healthy(self) -> bool:
        ok, body = _http_ok(f"{self.config.airflow_url}/api/v2/monitor/health")
        if not ok:
            return False
        try:
            health = json.loads(body)
        except ValueError:
            return False
        components = ("metadatabase", "scheduler", "dag_processor", "triggerer")
        return all((health.get(c) or {}).get("status") == "healthy" for c in components)

    # -- lifecycle -----------------------------------------------------------------

    def status(self) -> dict[str, str]:
        state = StackState.load(self.state_path)
        result = {}
        for service in self.services():
            running = state.services.get(service.name)
            if running is None or not group_members(running.pgid, self.config.marker):
                result[service.name] = "stopped"
            else:
                result[service.name] = "healthy" if service.is_healthy() else "unhealthy"
        return result

    def up(self) -> None:
        """Start what is not running and wait until everything is healthy."""
        cfg = self.config
        for folder in (cfg.state_dir, cfg.airflow_home, cfg.mlflow_dir, cfg.data_root, cfg.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.write_specs()
        self.write_components_shim()
        from mlops_airflow.embedded.owner import ensure_watchdog

        ensure_watchdog(cfg)  # a stack started by a test ends with the test process, however it ends
        state = StackState.load(self.state_path)
        for service in self.services():
            running = state.services.get(service.name)
            if running and group_members(running.pgid, cfg.marker):
                if self._wait_healthy(service, running, timeout=service.start_timeout):
                    self.echo(f"{service.name}: already running (pid {running.pid}), reusing it")
                    if service.when_healthy:
                        service.when_healthy()
                    continue
                self.echo(f"{service.name}: running but unhealthy; restarting it")
                self._stop_group(service.name, running)
            if service.prepare:
                service.prepare()
            if service.port and port_in_use(cfg.host, service.port):
                raise StackError(
                    f"{service.name}: port {service.port} on {cfg.host} is taken by a program this stack did not start; "
                    f"stop it or choose another port (MLOPS_{service.name.upper()}_PORT)"
                )
            running = self._start(service)
            state.services[service.name] = running
            state.save(self.state_path)
            if not self._wait_healthy(service, running, timeout=service.start_timeout):
                raise StackError(f"{service.name} did not become healthy within {service.start_timeout:.0f} s; see {running.log}:\n{_tail(running.log)}")
            if service.when_healthy:
                service.when_healthy()
            self.echo(f"{service.name}: healthy at {self._url(service.name)}")
        self.sync_pools()

    def write_specs(self) -> None:
        """Copy ``include/models/*.yaml`` for this stack, changed as its profile says.

        The ``demo`` profile (the default) turns the weekly retrain off: retrains start by
        hand or by drift; drift monitoring and batch scoring keep their schedules. See
        :mod:`mlops_airflow.embedded.profiles`.
        """
        import yaml

        from mlops_airflow.embedded.profiles import apply_profile, profile_name

        cfg = self.config
        profile = profile_name(os.environ)
        cfg.specs_dir.mkdir(parents=True, exist_ok=True)
        for source in sorted((cfg.repo_root / "include" / "models").glob("*.y*ml")):
            raw = apply_profile(profile, yaml.safe_load(source.read_text()))
            header = f"# Written by the embedded stack from {source} (profile {profile}); edit that file, not this one.\n"
            target = cfg.specs_dir / source.name
            temporary = target.with_suffix(".tmp")
            temporary.write_text(header + yaml.safe_dump(raw, sort_keys=False))
            modified = source.stat().st_mtime
            os.utime(temporary, (modified, modified))  # the copy is as old as its source: the loader's tie-break between clashing specs
            temporary.replace(target)

    def sync_pools(self) -> None:
        """Create the pools of ``airflow_settings.yaml`` (the promotion pool among them) through the REST API."""
        from mlops_airflow.hooks.airflow_api import AirflowClient

        pools = declared_pools(self.config.repo_root / SETTINGS_FILE)
        password = self.config.admin_password()
        if not pools or password is None:
            return
        client = AirflowClient(self.config.airflow_url, "admin", password)
        for pool in pools:
            client.ensure_pool(pool.name, pool.slots, pool.description)
        self.echo(f"airflow: pools {', '.join(f'{p.name} ({p.slots})' for p in pools)}")

    @property
    def components_bin_dir(self) -> Path:
        """Where ``up`` writes the ``airflow`` that starts ``airflow standalone``'s components; see :meth:`write_components_shim`."""
        return self.config.state_dir / "bin"

    def write_components_shim(self) -> None:
        """An ``airflow`` that starts ``airflow standalone``'s components without log servers.

        Standalone runs its scheduler and triggerer as ``airflow scheduler`` / ``airflow
        triggerer`` from PATH, and each would start a log server that Airflow binds to every
        interface (any host that reaches this machine could read task logs). Here every log
        is a file the API server reads from the same disk, so no log server is needed: this
        ``airflow`` adds ``--skip-serve-logs`` to those two and runs this venv's for the rest.
        """
        folder = self.components_bin_dir
        folder.mkdir(parents=True, exist_ok=True)
        real = Path(sys.executable).parent / "airflow"
        script = (
            "#!/bin/sh\n"
            "# Written by the embedded stack (mlops_airflow.embedded.stack.components_bin_dir).\n"
            f'case "$1" in scheduler|triggerer) exec {shlex.quote(str(real))} "$@" --skip-serve-logs ;; esac\n'
            f'exec {shlex.quote(str(real))} "$@"\n'
        )
        shim = folder / "airflow"
        temporary = shim.with_suffix(".tmp")
        temporary.write_text(script)
        temporary.chmod(0o755)
        temporary.replace(shim)

    def _url(self, name: str) -> str:
        if name == "postgres":
            return f"{self.postgres.socket_dir} (Unix socket)"
        return self.config.airflow_url if name == "airflow" else self.config.mlflow_url

    def _start(self, service: Service) -> RunningService:
        log_path = self.config.log_dir / f"{service.name}.log"
        # Standalone starts its components as `airflow ...` from PATH: this venv's, first.
        path = os.pathsep.join([*map(str, service.path_first), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        # SPT_NOENV: setproctitle (Airflow's components use it) would otherwise overwrite
        # /proc/<pid>/environ, and with it the marker that tells `down` the process is ours.
        # MLflow's pickle loaders are off in every process of the stack (tasks start from Airflow's).
        # OMP_NUM_THREADS: the stack's processes share this machine's cores; OpenMP threads spinning
        # beside each other made a fit 3 times and a prediction 4 times slower (one thread per process, unless set).
        env = {
            "OMP_NUM_THREADS": "1",
            **inherited_env(),
            **service.env,
            **SAFE_MODEL_ENV,
            "PATH": path,
            "SPT_NOENV": "1",
            STACK_MARKER_ENV: self.config.marker,
        }
        service.cwd.mkdir(parents=True, exist_ok=True)
        self.echo(f"{service.name}: starting (log: {log_path})")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                service.command,
                cwd=service.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as a whole by `down`
                preexec_fn=service.preexec,
            )
        self._started[service.name] = process
        return RunningService(name=service.name, pid=process.pid, pgid=process.pid, log=str(log_path), port=service.port)

    def _leader_running(self, running: RunningService) -> bool:
        """Whether the process this object started for ``running`` has not exited.

        Between fork and exec a new process still carries our environment, not the stack's
        marker, so the marker check alone would take a slow start for an early exit.
        """
        process = self._started.get(running.name)
        return process is not None and process.pid == running.pid and process.poll() is None

    def _wait_healthy(self, service: Service, running: RunningService, *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.is_healthy():
                return True
            if not group_members(running.pgid, self.config.marker) and not self._leader_running(running):
                raise StackError(f"{service.name} exited during start-up; see {running.log}:\n{_tail(running.log)}")
            time.sleep(1.0)
        return False

    def down(self, *, timeout: float = 30.0) -> list[str]:
        """End every process group this stack started; returns the names of those stopped."""
        state = StackState.load(self.state_path)
        stopped = []
        # Airflow first: its tasks may still be talking to MLflow; PostgreSQL, which both use, last.
        for name in sorted(state.services, key=lambda n: (n == "postgres", n != "airflow")):
            if self._stop_group(name, state.services[name], timeout=timeout):
                stopped.append(name)
        stopped += self.stop_serving()
        self.state_path.unlink(missing_ok=True)  # the watchdog may be stopping it at the same moment
        from mlops_airflow.embedded.owner import stop_watchdog

        stop_watchdog(self.config)
        return stopped

    @contextlib.contextmanager
    def _stack_environment(self):
        """This process's environment as the stack's Airflow sees it while specs are read (their ports and data root)."""
        env = self.airflow_env()
        keys = [k for k in env if k.startswith("MLOPS_")]
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update({k: env[k] for k in keys})
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def served_models(self) -> list:
        """The stack's specs served by the local backend (refused specs are echoed, not served)."""
        from mlops_airflow.specs import load_spec_folder

        if not self.config.specs_dir.is_dir():
            return []
        with self._stack_environment():
            folder = load_spec_folder(self.config.specs_dir)
        for error in folder.errors:
            self.echo(f"serving: spec refused, not served: {error}")
        return [spec for spec in folder.specs if spec.serving.backend == "local"]

    def _local_serving(self, spec):
        from mlops_airflow.serving.factory import local_serving_backend

        url = self.config.mlflow_url
        return local_serving_backend(spec, state_dir=self.config.serving_dir, env={"MLFLOW_TRACKING_URI": url, "MLFLOW_REGISTRY_URI": url})

    def restore_serving(self) -> None:
        """Serve every model's recorded live version again (after ``down`` or a reboot); see ``LocalServingBackend.restore_live``."""
        for spec in self.served_models():
            backend = self._local_serving(spec)
            if not backend.state_file.exists():
                continue
            started = time.monotonic()
            try:
                ready = backend.restore_live(estimator_kind=spec.training.estimator.kind, timeout=spec.serving.ready_timeout_seconds)
            except Exception as err:
                self.echo(f"serving: {spec.name} could not be restored: {err}")
                continue
            if ready is not None:
                self.echo(
                    f"serving: {spec.name} v{ready.version} live again on {ready.color} at {backend.live_url()}/invocations ({time.monotonic() - started:.1f} s)"
                )

    def serving_status(self) -> dict[str, str]:
        """Each served model: its live URL, colour and version, read from its router and state."""
        result = {}
        for spec in self.served_models():
            backend = self._local_serving(spec)
            status = backend.status()
            if status.live is None:
                result[spec.name] = "nothing live yet"
                continue
            color = status.colors[status.live]
            answering = "answering" if color.ready and backend.proxy_color() is status.live else f"not answering ({color.detail})"
            result[spec.name] = f"v{color.version} on {status.live} at {backend.live_url()}/invocations, {answering}"
        return result

    def stop_serving(self) -> list[str]:
        """The model servers and Caddy that serving tasks started, as recorded in their state files."""
        from mlops_airflow.serving.local import LocalServingBackend

        stopped = []
        for state_file in sorted(self.config.serving_dir.glob("*.json")):
            names = LocalServingBackend(model=state_file.stem, state_dir=self.config.serving_dir, ports=self.config.serving_ports).stop_all()
            if names:
                self.echo(f"serving: stopped {', '.join(names)}")
            stopped += names
        return stopped

    def _stop_group(self, name: str, running: RunningService, *, timeout: float = 30.0) -> bool:
        members = group_members(running.pgid, self.config.marker)
        if not members:
            return False
        self.echo(f"{name}: stopping process group {running.pgid} ({len(members)} processes)")
        self._signal(running.pgid, members, _STOP_SIGNALS.get(name, signal.SIGTERM))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            members = group_members(running.pgid, self.config.marker)
            if not members:
                return True
            time.sleep(0.5)
        self.echo(f"{name}: still running after {timeout:.0f} s; killing it")
        self._signal(running.pgid, members, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_members(running.pgid, self.config.marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        return True

    @staticmethod
    def _signal(pgid: int, members: list[int], signum: int) -> None:
        # Signal each verified member rather than the whole group id.
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


@dataclass(frozen=True)
class PoolSetting:
    name: str
    slots: int
    description: str


def declared_pools(settings_file: Path) -> list[PoolSetting]:
    """The pools of an ``airflow_settings.yaml`` (the Astro CLI's local settings)."""
    import yaml

    try:
        raw = yaml.safe_load(settings_file.read_text()) or {}
    except OSError:
        return []
    pools = ((raw.get("airflow") or {}).get("pools")) or []
    return [PoolSetting(str(p["pool_name"]), int(p["pool_slot"]), str(p.get("pool_description") or "")) for p in pools]


def _tail(path: str, lines: int = 20) -> str:
    try:
        content = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(content[-lines:])
