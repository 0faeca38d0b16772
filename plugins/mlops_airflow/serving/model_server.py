"""The model server of a colour: one registered version, loaded safely, scored by several workers behind MLflow's API.

Where it sits in the loop: deploy idle colour starts it for each colour (a local process, a Docker
container, a Kubernetes pod). ``mlflow models serve`` would load the version with MLflow's own
loader, which reads pickle and takes the skops trusted types from the model itself; this server
downloads the version, checks and loads it with :mod:`mlops_airflow.core.model_loading` (skops, the
package's trusted types for the estimator kind), and serves MLflow's scoring API
(:mod:`mlops_airflow.serving.scoring_app`): the same ``/ping``, ``/health`` and ``/invocations``.

Capacity (measured in ``bench/serving_bench.py``): the version is loaded once, then the server forks
``workers`` processes that share its listening socket and its memory pages; each scores concurrent
requests in merged batches (:mod:`mlops_airflow.serving.micro_batching`) on one thread (OpenMP and
BLAS pinned to one thread: processes, not threads, use the CPUs) and refuses work past its limits
with 503 and ``Retry-After``. A worker that dies is started again; the server's process stays up.
Nothing here imports Airflow (the server image has none).

``python -m mlops_airflow.serving.model_server --model-uri models:/churn/3 --estimator-kind
hist_gradient_boosting --host 0.0.0.0 --port 8080 [--workers 2]``; every option has an environment
variable (:data:`MODEL_URI_ENV`, :data:`ESTIMATOR_KIND_ENV`, and ``MLOPS_SERVING_*`` for capacity),
which is what a Deployment's patch sets.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_airflow.serving.inference_log import FLUSH_SECONDS_ENV, SAMPLE_RATE_ENV, URI_ENV, InferenceLogSettings, model_and_version

if TYPE_CHECKING:
    from mlops_airflow.specs import CapacitySpec

MODEL_URI_ENV = "MODEL_URI"
ESTIMATOR_KIND_ENV = "MODEL_ESTIMATOR_KIND"
WORKERS_ENV = "MLOPS_SERVING_WORKERS"
MAX_PENDING_ENV = "MLOPS_SERVING_MAX_PENDING"
MAX_BATCH_ROWS_ENV = "MLOPS_SERVING_MAX_BATCH_ROWS"
MAX_WAIT_ENV = "MLOPS_SERVING_MAX_WAIT_SECONDS"
EXIT_REFUSED = 3

DEFAULT_MAX_PENDING = 64
CONTAINER_WORKERS = 2  # a container's or pod's workers when the spec leaves them to the CPUs
DEFAULT_MAX_BATCH_ROWS = 4096
DEFAULT_MAX_WAIT_SECONDS = 1.0
COLOR_ENV = "MLOPS_SERVING_COLOR"
REQUEST_TIMEOUT_ENV = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"  # MLflow's own setting, kept
# One thread per worker for the native libraries: the workers are the parallelism, and OpenMP
# threads contending for the same cores made a 2-row prediction 4 to 60 times slower here.
SINGLE_THREADED_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Capacity:
    """How much one colour's server takes on: processes, and per process the waiting room and batch size."""

    workers: int | None  # None: one per CPU where the server runs
    max_pending: int = DEFAULT_MAX_PENDING
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS

    def __post_init__(self) -> None:
        if self.workers == 0:  # 0 means what None means, everywhere: one per CPU where the server runs
            object.__setattr__(self, "workers", None)
        if (self.workers is not None and self.workers < 1) or self.max_pending < 1 or self.max_batch_rows < 1 or not self.max_wait_seconds > 0:
            raise ValueError(f"capacity must be positive: {self}")

    @classmethod
    def from_spec(cls, spec: CapacitySpec) -> Capacity:
        """A spec's ``serving.capacity``; workers ``None`` stays for the server to count its CPUs."""
        return cls(workers=spec.workers, max_pending=spec.max_pending, max_batch_rows=spec.max_batch_rows, max_wait_seconds=spec.max_wait_seconds)

    def for_container(self) -> Capacity:
        """A container or pod counts its host's CPUs, not its own share: ``None`` workers become :data:`CONTAINER_WORKERS`."""
        return self if self.workers is not None else dataclasses.replace(self, workers=CONTAINER_WORKERS)

    def environment(self) -> dict[str, str]:
        """The same settings as the server's environment variables (what a Deployment sets)."""
        return {
            WORKERS_ENV: str(self.workers or 0),
            MAX_PENDING_ENV: str(self.max_pending),
            MAX_BATCH_ROWS_ENV: str(self.max_batch_rows),
            MAX_WAIT_ENV: f"{self.max_wait_seconds:g}",
        }

    def arguments(self) -> list[str]:
        """The server's options; ``--workers`` only when set."""
        workers = ["--workers", str(self.workers)] if self.workers is not None else []
        return [
            *workers,
            "--max-pending",
            str(self.max_pending),
            "--max-batch-rows",
            str(self.max_batch_rows),
            "--max-wait-seconds",
            f"{self.max_wait_seconds:g}",
        ]


def default_workers() -> int:
    """One worker per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def server_command(
    python: str,
    *,
    model_uri: str | None,
    estimator_kind: str | None,
    host: str,
    port: int,
    capacity: Capacity | None = None,
    color: str | None = None,
    identity: tuple[str, str] | None = None,
    inference_log: InferenceLogSettings | None = None,
) -> list[str]:
    """The server's argv; ``None`` leaves a value to its environment variable. ``identity``: (model, version) for the log."""
    command = [python, "-m", "mlops_airflow.serving.model_server", "--host", host, "--port", str(port)]
    if color is not None:
        command += ["--color", color]
    if identity is not None:
        command += ["--model-name", identity[0], "--model-version", identity[1]]
    if inference_log is not None:
        command += inference_log.arguments()
    if model_uri is not None:
        command += ["--model-uri", model_uri]
    if estimator_kind is not None:
        command += ["--estimator-kind", estimator_kind]
    if capacity is not None:
        command += capacity.arguments()
    return command


def load(model_uri: str, estimator_kind: str, folder: str):
    """Download ``model_uri`` into ``folder`` and load it safely (raises ``UnsafeModelError``)."""
    import mlflow.artifacts

    from mlops_airflow.core.model_loading import load_model_dir, trusted_types

    path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
    return load_model_dir(path, what=model_uri, trusted=trusted_types(estimator_kind))


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def serve_worker(
    model,
    sock: socket.socket,
    capacity: Capacity,
    request_timeout: float,
    *,
    identity: tuple[str, str] = ("unknown", "unknown"),
    color: str = "",
    log: InferenceLogSettings | None = None,
) -> None:
    """One worker: an uvicorn server of the scoring app on the shared socket, until SIGTERM (which writes what the log holds)."""
    import mlflow
    import uvicorn

    from mlops_airflow.serving.inference_log import InferenceLog
    from mlops_airflow.serving.micro_batching import MicroBatcher
    from mlops_airflow.serving.scoring_app import ScoringApp

    batcher = MicroBatcher(model, max_pending=capacity.max_pending, max_batch_rows=capacity.max_batch_rows, max_wait=capacity.max_wait_seconds)
    name, version = identity
    inference_log = InferenceLog(log, model=name, version=version, color=color or "unknown") if log is not None else None
    app = ScoringApp(batcher, request_timeout=request_timeout, version=mlflow.__version__, inference_log=inference_log)
    # uvloop and httptools where installed (the serving image has them), asyncio and h11 otherwise.
    config = uvicorn.Config(app, loop="auto", http="auto", lifespan="on", log_level="warning", access_log=False, timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Forks ``workers`` processes running ``work`` and starts one again when it dies; SIGTERM ends them all.

    A worker that dies within ``min_uptime`` seconds of its start is started again only after
    ``backoff`` seconds; after ``max_quick_deaths`` of those in a row the server gives up and exits
    1, so that its orchestrator (Kubernetes, Docker, the release's readiness check) sees a crash,
    not a server that answers nothing. A worker ends when the server's process does, even killed.
    """

    def __init__(
        self, workers: int, work: Callable[[], None], *, min_uptime: float = 5.0, backoff: float = 1.0, grace: float = 20.0, max_quick_deaths: int = 5
    ) -> None:
        self.workers = workers
        self.work = work
        self.min_uptime = min_uptime
        self.backoff = backoff
        self.grace = grace
        self.children: dict[int, float] = {}  # pid -> started at
        self.restarts = 0
        self.quick_deaths = 0  # in a row: workers that died within min_uptime of their start
        self.max_quick_deaths = max_quick_deaths
        self.stopping = False
        self.crashed = False

    def _fork(self) -> None:
        # SIGTERM held back across the fork: one that arrives before the worker has its own
        # handlers would otherwise run the server's (note "stop") in the worker, which would serve on.
        stopping_signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping_signals)
        pid = os.fork()
        if pid == 0:  # the worker
            _end_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping_signals)
            code = 0
            try:
                self.work()
            except BaseException:  # the worker reports and exits; the supervisor starts another
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping_signals)
        self.children[pid] = time.monotonic()

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self.workers):
            self._fork()
        print(f"serving with {self.workers} worker(s): {sorted(self.children)}", file=sys.stderr, flush=True)
        while not self.stopping:
            self._reap_and_replace()
            time.sleep(0.2)
        self._end_children()
        return 1 if self.crashed else 0

    def _reap_and_replace(self) -> None:
        for pid, started in list(self.children.items()):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                del self.children[pid]
                if self.stopping:
                    continue
                quick = time.monotonic() - started < self.min_uptime
                self.quick_deaths = self.quick_deaths + 1 if quick else 0
                if self.quick_deaths >= self.max_quick_deaths:
                    print(
                        f"worker {pid} ended ({_describe(status)}); {self.quick_deaths} workers in a row died at start: giving up", file=sys.stderr, flush=True
                    )
                    self.stopping = self.crashed = True
                    return
                self.restarts += 1
                print(f"worker {pid} ended ({_describe(status)}); starting another (restart {self.restarts})", file=sys.stderr, flush=True)
                if quick:
                    time.sleep(self.backoff)
                self._fork()

    def _end_children(self) -> int:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        del self.children[pid]
            time.sleep(0.05)
        for pid in list(self.children):  # past the grace: killed, and reaped
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del self.children[pid]
        return 0


def _end_with_parent() -> None:
    """Linux: this (forked) process gets SIGTERM when the server's process dies, even by SIGKILL; elsewhere nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the server died before the call above
        os._exit(0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _positive_env(name: str, default: float, kind: type = int, *, zero_is_default: bool = False):
    raw = os.environ.get(name)
    if raw in (None, "") or (zero_is_default and raw.strip() == "0"):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if not value > 0:
        raise SystemExit(f"{name}={raw!r} must be above 0")
    return value


def _given(argument, name: str, default: float, kind: type = int):
    """An option given on the command line (even a bad one, refused by :class:`Capacity`), else its environment variable."""
    return argument if argument is not None else _positive_env(name, default, kind)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default=os.environ.get(MODEL_URI_ENV) or None)
    parser.add_argument("--estimator-kind", default=os.environ.get(ESTIMATOR_KIND_ENV) or None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=None, help=f"processes (env {WORKERS_ENV}; default: one per CPU)")
    parser.add_argument("--max-pending", type=int, default=None, help=f"requests waiting or running per worker (env {MAX_PENDING_ENV})")
    parser.add_argument("--max-batch-rows", type=int, default=None, help=f"rows per model call (env {MAX_BATCH_ROWS_ENV})")
    parser.add_argument("--max-wait-seconds", type=float, default=None, help=f"longest wait for the model before a 503 (env {MAX_WAIT_ENV})")
    parser.add_argument("--color", default=os.environ.get(COLOR_ENV) or "", help=f"the colour this server is, for the inference log (env {COLOR_ENV})")
    parser.add_argument("--model-name", default=None, help="the registered model, for the inference log (default: from a models:/ URI)")
    parser.add_argument("--model-version", default=None, help="the version, for the inference log (default: from a models:/ URI)")
    parser.add_argument(
        "--inference-log", default=os.environ.get(URI_ENV) or None, help=f"log every answer under this URI, daily Parquet partitions (env {URI_ENV})"
    )
    parser.add_argument("--inference-log-sample-rate", type=float, default=None, help=f"share of requests logged, (0, 1] (env {SAMPLE_RATE_ENV})")
    parser.add_argument("--inference-log-flush-seconds", type=float, default=None, help=f"seconds between two writes (env {FLUSH_SECONDS_ENV})")
    args = parser.parse_args(argv)
    if not args.model_uri or not args.estimator_kind:
        parser.error(f"--model-uri and --estimator-kind (or {MODEL_URI_ENV} and {ESTIMATOR_KIND_ENV}) are required")
    try:
        # --workers 0, like MLOPS_SERVING_WORKERS=0 and the spec's 0: one per CPU.
        workers = args.workers if args.workers is not None else _positive_env(WORKERS_ENV, 0, zero_is_default=True)
        args.capacity = Capacity(
            workers=workers or default_workers(),
            max_pending=_given(args.max_pending, MAX_PENDING_ENV, DEFAULT_MAX_PENDING),
            max_batch_rows=_given(args.max_batch_rows, MAX_BATCH_ROWS_ENV, DEFAULT_MAX_BATCH_ROWS),
            max_wait_seconds=_given(args.max_wait_seconds, MAX_WAIT_ENV, DEFAULT_MAX_WAIT_SECONDS, float),
        )
        args.log = (
            InferenceLogSettings(
                uri=args.inference_log,
                sample_rate=_given(args.inference_log_sample_rate, SAMPLE_RATE_ENV, 1.0, float),
                flush_seconds=_given(args.inference_log_flush_seconds, FLUSH_SECONDS_ENV, 2.0, float),
            )
            if args.inference_log
            else None
        )
    except ValueError as err:
        parser.error(str(err))
    args.request_timeout = _positive_env(REQUEST_TIMEOUT_ENV, 60.0, float)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before numpy and scikit-learn load their native libraries.
    for name, value in SINGLE_THREADED_ENV.items():
        os.environ.setdefault(name, value)
    from mlops_airflow.core.model_loading import SAFE_MODEL_ENV, UnsafeModelError

    # Whatever started us: no MLflow loader in this process deserialises pickle.
    os.environ.update(SAFE_MODEL_ENV)
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder:
        try:
            model = load(args.model_uri, args.estimator_kind, folder)
        except UnsafeModelError as err:
            print(f"refusing to serve {err}", file=sys.stderr, flush=True)
            return EXIT_REFUSED
    try:
        sock = listen(args.host, args.port)
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr, flush=True)
        return 1
    capacity = args.capacity
    if args.log is not None:
        from mlops_airflow.serving.inference_log import InferenceLog

        InferenceLog.load_writer()  # once, shared by the workers' memory, and never on a request's path
    # Everything loaded so far (MLflow, pandas, scikit-learn, the model) lives as long as the server:
    # out of the garbage collector's sight, a full collection no longer walks it (pauses of
    # 100 ms and more under load), and the workers' forked copies of those pages stay shared.
    gc.freeze()

    def work() -> None:
        named, numbered = model_and_version(args.model_uri)
        identity = (args.model_name or named, args.model_version or numbered)
        serve_worker(model, sock, capacity, args.request_timeout, identity=identity, color=args.color, log=args.log)

    return Supervisor(capacity.workers, work).run()


if __name__ == "__main__":
    sys.exit(main())
