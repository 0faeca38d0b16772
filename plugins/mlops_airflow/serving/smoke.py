"""The smoke test of a colour: health, response schema, golden rows, latency and errors under a burst.

Airflow-free; the operator hands over the URL, the rows and the offline predictions.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class SmokeResult:
    passed: bool
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    p95_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("latencies_ms")
        return out


def payload(rows: pd.DataFrame) -> bytes:
    """MLflow's scoring-server input: ``dataframe_split``, JSON-safe (NaN becomes null)."""
    split = json.loads(rows.to_json(orient="split", index=False, date_format="iso"))
    return json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"]}}).encode()


def post(url: str, body: bytes, timeout: float) -> tuple[int, float, Any]:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})  # noqa: S310 - our own URL
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = json.loads(response.read())
            return response.status, (time.perf_counter() - started) * 1000, answer
    except urllib.error.HTTPError as err:
        return err.code, (time.perf_counter() - started) * 1000, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, (time.perf_counter() - started) * 1000, None


def health(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as response:  # noqa: S310 - our own URL
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0


def smoke_test(
    url: str,
    rows: pd.DataFrame,
    expected,
    *,
    burst: int,
    max_p95_ms: float,
    max_error_rate: float,
    tolerance: float,
    concurrency: int = 1,
    timeout: float = 10.0,
) -> SmokeResult:
    """Every check runs and every problem is listed; ``passed`` only when there is none.

    The burst sends ``burst`` requests of two golden rows each (a different pair per request),
    ``concurrency`` at a time (as live traffic arrives: the server batches them), and judges the
    error rate, the p95 latency under that concurrency, and every answer against the offline
    predictions of its own rows.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    result = SmokeResult(passed=False)
    status = health(url, timeout)
    if status != 200:
        result.problems.append(f"health: /ping answered {status or 'nothing'}")
        return result
    body = payload(rows)
    status, _, answer = post(url, body, timeout)
    expected = np.asarray(expected, dtype="float64")
    if status != 200 or not isinstance(answer, dict) or "predictions" not in answer:
        result.problems.append(f"schema: /invocations answered {status} without a 'predictions' field")
    elif (difference := _difference(answer["predictions"], expected)) is not None and difference > tolerance:
        result.problems.append(f"golden rows: served predictions differ from the offline ones by up to {difference:.3g} (tolerance {tolerance:g})")
    elif difference is None:
        result.problems.append(f"schema: predictions of shape {np.asarray(answer['predictions']).shape}, expected {expected.shape}")
    # Each burst request carries its own slice of the golden rows (two at a time, round the sample):
    # an answer that came back with another request's rows (a batching bug) is caught.
    starts = [(2 * i) % len(rows) for i in range(burst)]
    bodies = {start: payload(rows.iloc[start : start + 2]) for start in set(starts)}
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, burst)), thread_name_prefix="smoke") as pool:
        answers = list(pool.map(lambda start: post(url, bodies[start], timeout), starts))
    wrong = 0
    for start, (status, latency, answer) in zip(starts, answers, strict=True):
        result.requests += 1
        result.errors += status != 200
        result.latencies_ms.append(latency)
        if status == 200:
            difference = _difference(answer.get("predictions") if isinstance(answer, dict) else None, expected[start : start + 2])
            wrong += difference is None or difference > tolerance
    ordered = sorted(result.latencies_ms)
    result.p95_ms = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0
    error_rate = result.errors / max(result.requests, 1)
    if error_rate > max_error_rate:
        result.problems.append(f"burst: error rate {error_rate:.1%} over {result.requests} requests > {max_error_rate:.1%}")
    if wrong:
        result.problems.append(f"burst: {wrong} of {result.requests} answers differ from the offline predictions (tolerance {tolerance:g})")
    if result.p95_ms > max_p95_ms:
        result.problems.append(f"burst: p95 latency {result.p95_ms:.0f} ms with {concurrency} in flight > {max_p95_ms:.0f} ms")
    result.passed = not result.problems
    return result


def _difference(served: Any, expected) -> float | None:
    """The largest absolute difference between served and expected predictions; ``None`` when their shapes differ."""
    import numpy as np

    try:
        served = np.asarray(served, dtype="float64")
    except (TypeError, ValueError):
        return None
    if served.shape != expected.shape:
        return None
    return float(np.max(np.abs(served - expected))) if served.size else 0.0
