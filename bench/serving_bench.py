"""Benchmark: serving the demo's churn model, 2-row requests. Ours (through the live URL and direct) vs MLflow's
scoring server (1 and N workers) vs the in-process floor; then overload, recovery and a switchover under load.

Everything runs on this machine in one run, side by side; the report gives each contender's throughput and
latency and its ratio to the in-process floor (one thread calling ``predict`` on 2 rows), never absolute goals.
The load generator is wrk (``make bench`` installs it from Debian's packages when it is missing).

    make bench            # or: python bench/serving_bench.py --seconds 10 --connections 16
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".local" / "bench" / "serving"
KIND = "hist_gradient_boosting"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def churn_model(folder: Path) -> tuple[Path, pd.DataFrame]:
    """The demo's churn pipeline (its spec's estimator), trained on 14 synthetic days; saved once as skops."""
    import yaml

    model_dir, sample_file = folder / "churn-model", folder / "sample.parquet"
    if (model_dir / "MLmodel").is_file() and sample_file.is_file():
        return model_dir, pd.read_parquet(sample_file)
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlops_airflow.core.estimators import TRUSTED_TYPES, build_pipeline
    from mlops_airflow.core.features import prepare_features
    from mlops_airflow.embedded.synthetic import generate_day
    from mlops_airflow.specs import parse_spec

    spec = parse_spec(yaml.safe_load((ROOT / "include" / "models" / "churn.yaml").read_text()), source="churn.yaml")
    frame = pd.concat([generate_day(dt.date(2026, 1, 1) + dt.timedelta(days=i), rows=2000) for i in range(14)], ignore_index=True)
    features = prepare_features(frame, spec)
    estimator = spec.training.estimator
    pipeline = build_pipeline(estimator.kind, estimator.params, numeric=spec.features.numeric, categorical=spec.features.categorical, seed=42)
    pipeline.fit(features, frame[spec.target.column].astype("int64"))
    shutil.rmtree(model_dir, ignore_errors=True)
    example = features.head(5)
    mlflow.sklearn.save_model(
        pipeline,
        str(model_dir),
        signature=infer_signature(example, pipeline.predict_proba(example)),
        pyfunc_predict_fn="predict_proba",
        serialization_format="skops",
        skops_trusted_types=list(TRUSTED_TYPES[estimator.kind]),
        pip_requirements=["scikit-learn"],
    )
    features.head(2000).to_parquet(sample_file)
    return model_dir, features.head(2000)


def body_of(rows: pd.DataFrame) -> bytes:
    split = json.loads(rows.to_json(orient="split", index=False))
    return json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"]}}).encode()


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, float, bytes, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, time.perf_counter() - started, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, time.perf_counter() - started, err.read(), dict(err.headers)
    except OSError:
        return 0, time.perf_counter() - started, b"", {}


def wait_ping(url: str, timeout: float = 180.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.is_file() else ""
    raise RuntimeError(f"{url} did not answer /ping within {timeout:.0f} s\n{tail}")


def pss_mib(pids: list[int]) -> float:
    """Proportional set size of these processes: shared pages counted once across them."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


class Wrk:
    """wrk with a POST body; ``close`` opens a connection per request; ``rate`` paces the connections to about that many requests/s in all."""

    def __init__(self, body: bytes, folder: Path) -> None:
        self.folder = folder
        self.body_file = folder / "body.json"
        self.body_file.write_bytes(body)

    def script(self, *, close: bool, delay_ms: int) -> Path:
        path = self.folder / f"post-{int(close)}-{delay_ms}.lua"
        lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
        if close:
            lines.append('wrk.headers["Connection"] = "close"')
        lines.append(f'local f = io.open("{self.body_file}", "r"); wrk.body = f:read("*a"); f:close()')
        if delay_ms:
            lines.append(f"function delay() return {delay_ms} end")
        path.write_text("\n".join(lines) + "\n")
        return path

    def run(self, url: str, *, connections: int, seconds: float, close: bool = False, rate: float = 0.0, latency_ms: float = 0.0) -> dict[str, float]:
        """``rate``: each connection waits so that, with answers taking about ``latency_ms``, they offer ``rate`` requests/s in all."""
        delay_ms = max(1, int(connections * 1000 / rate - latency_ms)) if rate else 0
        script = self.script(close=close, delay_ms=delay_ms)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency", "-s", str(script), f"{url}/invocations"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return parse_wrk(out)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, float]:
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, flags=re.MULTILINE))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(latency["50"]),
        "p99": _ms(latency["99"]),
        "requests": total,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def floor_rate(model_dir: Path, rows: pd.DataFrame, seconds: float) -> float:
    """2-row ``predict`` calls per second, one thread, in this process (OpenMP on one thread, as in the servers)."""
    from mlops_airflow.core.model_loading import load_model_dir, trusted_types

    model = load_model_dir(model_dir, what="churn", trusted=trusted_types(KIND))
    two = rows.head(2)
    model.predict(two)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict(two)
        calls += 1
    return calls / (time.perf_counter() - started)


def mlflow_server(model_dir: Path, workers: int, folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(folder / f"mlflow-{workers}.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "-w",
            str(workers),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # It runs `uvicorn` from PATH: this environment's.
        env={**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    return process, f"http://127.0.0.1:{port}"


def our_server(model_dir: Path, workers: int, folder: Path, inference_log=None) -> tuple[subprocess.Popen, str]:
    from mlops_airflow.serving.model_server import Capacity, server_command

    port = free_port()
    log = open(folder / f"ours-{workers}.log", "wb")  # noqa: SIM115 - closed with the process
    command = server_command(
        sys.executable,
        model_uri=model_dir.as_uri(),
        estimator_kind=KIND,
        host="127.0.0.1",
        port=port,
        capacity=Capacity(workers=workers),
        color="blue",
        identity=("bench", "1"),
        inference_log=inference_log,
    )
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


def inference_log_cost(model_dir: Path, workers: int, folder: Path, wrk: Wrk, *, seconds: float, connections: int, rounds: int = 3) -> list[tuple[str, dict]]:
    """The same server with and without the inference log, in alternating rounds: closed loop, then paced at half the closed-loop rate."""
    from mlops_airflow.core.partitions import read_period
    from mlops_airflow.serving.inference_log import InferenceLogSettings

    results: dict[str, list[dict]] = {"off": [], "on": []}
    paced_rate = 0.0
    for round_number in range(rounds):
        for mode in ("off", "on"):
            log = InferenceLogSettings(uri=(folder / f"log-{round_number}").as_uri()) if mode == "on" else None
            process, url = our_server(model_dir, workers, folder, inference_log=log)
            began = dt.datetime.now(dt.UTC)
            try:
                wait_ping(url, log=folder / f"ours-{workers}.log")
                time.sleep(1)
                closed = wrk.run(url, connections=connections, seconds=seconds)
                paced_rate = paced_rate or closed["rps"] / 2
                paced = wrk.run(url, connections=connections, seconds=seconds, rate=paced_rate, latency_ms=closed["p50"])
            finally:
                stop(process)  # a graceful stop: the log writes what it holds
            if log is not None:
                closed["logged"] = len(read_period(log.uri, began, dt.datetime.now(dt.UTC), columns=["ts"]))
                closed["answered"] = closed["requests"] + paced["requests"]  # wrk's count: it drops the answers in flight when it stops
            results[mode].append({"closed": closed, "paced": paced})
    rows = []
    for mode in ("off", "on"):
        for kind in ("closed", "paced"):
            runs = [r[kind] for r in results[mode]]
            median = {key: sorted(run[key] for run in runs)[len(runs) // 2] for key in ("rps", "p50", "p99")}
            rows.append(
                (
                    f"inference log {mode}, {kind}",
                    {**median, "logged": sum(r.get("logged", 0) for r in runs), "answered": sum(r.get("answered", 0) for r in runs)},
                )
            )
    return rows


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, 9)


def served_matches_offline(url: str, model_dir: Path, rows: pd.DataFrame) -> float:
    """The largest difference between served and offline predictions over 200 requests of 2 rows, sent 8 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from mlops_airflow.core.model_loading import load_model_dir, trusted_types

    offline = np.asarray(load_model_dir(model_dir, what="churn", trusted=trusted_types(KIND)).predict(rows.head(400)))
    chunks = [rows.iloc[i : i + 2] for i in range(0, 400, 2)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda chunk: post(url, body_of(chunk)), chunks))
    if any(status != 200 for status, *_ in answers):
        raise RuntimeError(f"statuses {sorted({a[0] for a in answers})} while checking predictions")
    served = np.concatenate([np.asarray(json.loads(body)["predictions"]) for _, _, body, _ in answers])
    return float(np.max(np.abs(served - offline)))


class Probe(threading.Thread):
    """One request every ``interval`` seconds on a fresh connection: (time, status, latency, Retry-After)."""

    def __init__(self, url: str, body: bytes, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.interval = url, body, interval
        self.samples: list[tuple[float, int, float, str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            at = time.monotonic()
            status, latency, _, headers = post(self.url, self.body, timeout=10)
            self.samples.append((at, status, latency * 1000, headers.get("Retry-After")))
            time.sleep(max(0.0, self.interval - (time.monotonic() - at)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def overload_and_recovery(url: str, wrk: Wrk, *, rate: float, burst_seconds: float) -> dict[str, float]:
    """Baseline probe, a burst paced at ``rate`` requests/s for ``burst_seconds``, then how long until the probe's latency is normal."""
    probe = Probe(url, wrk.body_file.read_bytes())
    probe.start()
    time.sleep(3)
    burst_start = time.monotonic()
    burst = wrk.run(url, connections=256, seconds=burst_seconds, rate=rate)
    burst_end = time.monotonic()
    time.sleep(12)
    probe.done.set()
    probe.join()
    before = [s for s in probe.samples if s[0] < burst_start]
    during = [s for s in probe.samples if burst_start <= s[0] < burst_end]
    after = [s for s in probe.samples if s[0] >= burst_end]
    normal = 2 * max(percentile([s[2] for s in before if s[1] == 200], 0.99), 5.0)
    recovered_at = burst_end
    for at, status, latency, _ in after:  # the last abnormal answer after the burst ends
        if status != 200 or latency > normal:
            recovered_at = at
    refusals = [s for s in during if s[1] == 503]
    return {
        "burst_rps": burst["rps"],
        "burst_refused_fraction": burst["non_2xx"] / max(burst["requests"], 1),
        "burst_socket_errors": burst["socket_errors"],
        "probe_refusal_p99_ms": percentile([s[2] for s in refusals], 0.99),
        "probe_refusals_with_retry_after": sum(1 for s in refusals if s[3]) / max(len(refusals), 1),
        "probe_accepted_p99_ms_during": percentile([s[2] for s in during if s[1] == 200], 0.99),
        "probe_other_failures_during": sum(1 for s in during if s[1] not in (200, 503)),
        "recovery_seconds": recovered_at - burst_end,
        "normal_ms": normal,
    }


def switchovers_under_load(backend, wrk: Wrk, *, rate: float, seconds: float, close: bool) -> dict[str, float]:
    """wrk paced at ``rate`` on the live URL while the live colour switches every 2 s (a release, then a hand rollback, ...)."""
    from mlops_airflow.serving.base import Color

    results: dict[str, float] = {}

    def load() -> None:
        results.update(wrk.run(backend.live_url(), connections=32, seconds=seconds, close=close, rate=rate))

    runner = threading.Thread(target=load)
    runner.start()
    switches = 0
    deadline = time.monotonic() + seconds - 1
    while time.monotonic() < deadline:
        time.sleep(2)
        target = backend.live_color().other
        backend.switch(target)
        switches += 1
    runner.join()
    results["switches"] = switches
    assert backend.live_color() in (Color.BLUE, Color.GREEN)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each throughput run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for the throughput runs")
    parser.add_argument("--workers", type=int, default=0, help="N for the N-worker contenders (default: the CPUs)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: `make bench` installs it (apt-get install wrk)", file=sys.stderr)
        return 2
    from mlops_airflow.serving.model_server import default_workers

    workers = args.workers or default_workers()
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    model_dir, rows = churn_model(WORK)
    print(
        f"churn model ready ({time.monotonic() - started:.0f} s); {os.cpu_count()} CPUs; N = {workers} workers; wrk -c{args.connections} for {args.seconds:g} s"
    )
    folder = Path(tempfile.mkdtemp(prefix="serving-bench-", dir=WORK))
    wrk = Wrk(body_of(rows.head(2)), folder)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    floor = floor_rate(model_dir, rows, args.seconds)

    from mlops_airflow.serving.base import Color
    from mlops_airflow.serving.local import LocalServingBackend
    from mlops_airflow.serving.local_ports import LocalPorts
    from mlops_airflow.serving.model_server import Capacity

    backend = LocalServingBackend(
        model="bench",
        state_dir=folder / "state",
        ports=LocalPorts(live=free_port(), blue=free_port(), green=free_port()),
        capacity=Capacity(workers=workers),
    )
    rows_out: list[tuple[str, dict[str, float], float]] = []
    try:
        backend.deploy(Color.BLUE, "1", model_dir.as_uri(), estimator_kind=KIND)
        backend.wait_ready(Color.BLUE, timeout=180, poll=0.5)
        backend.switch(Color.BLUE)
        live = backend.live_url()
        difference = served_matches_offline(live, model_dir, rows)
        blue_pids = group_pids(backend._load()["colors"]["blue"]["pgid"])
        rows_out.append((f"ours, live URL (Caddy -> {workers} workers)", wrk.run(live, connections=args.connections, seconds=args.seconds), pss_mib(blue_pids)))
        rows_out.append(("ours, live URL, a connection per request", wrk.run(live, connections=args.connections, seconds=args.seconds, close=True), 0.0))
        for rate in (500, 1000):  # the goal's rates, offered (wrk paced over 64 connections) rather than as fast as answers come
            paced = wrk.run(live, connections=64, seconds=args.seconds, rate=rate, latency_ms=rows_out[0][1]["p50"])
            rows_out.append((f"ours, live URL, {rate} requests/s offered", paced, 0.0))
        for make, name in ((our_server, "ours, direct"), (mlflow_server, "MLflow scoring server")):
            for n in sorted({1, workers}):
                process, url = make(model_dir, n, folder)
                try:
                    wait_ping(url, log=folder / f"{'ours' if make is our_server else 'mlflow'}-{n}.log")
                    time.sleep(1)
                    result = wrk.run(url, connections=args.connections, seconds=args.seconds)
                    rows_out.append((f"{name}, {n} worker{'s' if n > 1 else ''}", result, pss_mib(group_pids(process.pid))))
                finally:
                    stop(process)

        print(f"\nThroughput and latency, 2-row requests, wrk -c{args.connections}; the floor: one thread calling predict, {floor:.0f} calls/s")
        print(f"  {'contender':<48}{'req/s':>8}{'vs floor':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'errors':>8}{'memory MiB':>12}")
        for name, result, memory in rows_out:
            print(
                f"  {name:<48}{result['rps']:>8.0f}{result['rps'] / floor:>9.1f}x{result['p50']:>9.1f}{result['p99']:>9.1f}"
                f"{result['non_2xx']:>9}{result['socket_errors']:>8}{(f'{memory:.0f}' if memory else '-'):>12}"
            )
        print(f"  served vs offline predictions (400 rows, 2-row requests 8 at a time): largest difference {difference:.3g}")

        print(f"\nThe inference log's cost: ours, direct, {workers} workers, every answer logged or none; 3 alternating rounds, medians")
        print(f"  {'run':<40}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
        for name, result in inference_log_cost(model_dir, workers, folder, wrk, seconds=args.seconds, connections=args.connections):
            counted = f"   logged {result['logged']} rows for {result['answered']} answers wrk counted" if result["logged"] else ""
            print(f"  {name:<40}{result['rps']:>8.0f}{result['p50']:>9.1f}{result['p99']:>9.1f}{counted}")

        capacity = rows_out[0][1]["rps"]  # closed loop, wrk -c<connections>
        print(f"\nOverload: 3x the live URL's capacity above ({3 * capacity:.0f} requests/s offered, wrk paced) for 20 s; a probe request every 20 ms")
        overload = overload_and_recovery(live, wrk, rate=3 * capacity, burst_seconds=20)
        for key, value in overload.items():
            print(f"  {key:<40}{value:>10.3f}")

        backend.deploy(Color.GREEN, "2", model_dir.as_uri(), estimator_kind=KIND)
        backend.wait_ready(Color.GREEN, timeout=180, poll=0.5)
        print(f"\nSwitchovers under load: half the capacity ({capacity / 2:.0f} requests/s, wrk paced) on the live URL, the live colour switched every 2 s")
        for close in (False, True):
            result = switchovers_under_load(backend, wrk, rate=capacity / 2, seconds=12, close=close)
            kind = "a connection per request" if close else "keep-alive"
            print(
                f"  {kind:<28}{result['requests']:>8} requests, {result['rps']:>6.0f} req/s, {int(result['switches'])} switches, "
                f"non-2xx {result['non_2xx']}, socket errors {result['socket_errors']}, p99 {result['p99']:.1f} ms"
            )
    finally:
        backend.stop_all()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
