"""Benchmark: the data-contract check vs reading the same data (the floor) vs pandera.

10 million rows x 20 columns in 10 daily partitions, generated once under
``.local/bench/``. Each contender runs in this one process, interleaved, several times;
the report gives medians and ratios to the read floor, never absolute goals.

    make bench            # or: python bench/contract_bench.py --rows 10000000 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlops_airflow.core.contract import evaluate_contract
from mlops_airflow.core.partitions import partition_uri
from mlops_airflow.hooks.partition_storage import read_partition
from mlops_airflow.specs import parse_spec

START = dt.date(2026, 1, 1)
FLOATS = [f"f{i}" for i in range(10)]
INTS = [f"i{i}" for i in range(5)]
CATEGORIES = {"c0": ["a", "b", "c"], "c1": ["north", "south", "east", "west"], "c2": ["x", "y"]}


def make_day(day: dt.date, rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng([seed, day.toordinal()])
    columns: dict[str, pa.Array] = {
        "id": pa.array(np.char.add(f"{day:%Y%m%d}-", np.arange(rows).astype(str))),
        "ts": pa.array(np.datetime64(day, "ns") + np.sort(rng.integers(0, 86_400 * 10**9, rows)).astype("timedelta64[ns]"), type=pa.timestamp("ns", tz="UTC")),
    }
    for name in FLOATS:
        columns[name] = pa.array(rng.normal(50, 10, rows))
    for name in INTS:
        columns[name] = pa.array(rng.integers(0, 100, rows))
    for name, values in CATEGORIES.items():
        columns[name] = pa.array(np.asarray(values)[rng.integers(0, len(values), rows)])
    return pa.table(columns)


def contract_spec(base_uri: str):
    columns = {"id": {"dtype": "string", "unique": True}, "ts": {"dtype": "timestamp"}}
    columns |= {n: {"dtype": "float", "min": -1000, "max": 1000} for n in FLOATS}
    columns |= {n: {"dtype": "int", "min": 0, "max": 99} for n in INTS}
    columns |= {n: {"dtype": "string", "allowed": v} for n, v in CATEGORIES.items()}
    raw = {
        "name": "bench",
        "data": {"uri": base_uri, "timestamp_column": "ts", "predictions_uri": base_uri + "-predictions"},
        "features": {"numeric": FLOATS + INTS, "categorical": list(CATEGORIES)},
        "target": {"column": "i0", "classes": [0, 1]},
        "training": {"estimator": {"kind": "hist_gradient_boosting"}},
        "contract": {"columns": columns, "max_delay_hours": 48, "rows": {"max_per_partition": 10**8}},
    }
    # i0 is the "target" only to satisfy the spec; it is checked like the other int columns.
    raw["features"]["numeric"].remove("i0")
    return parse_spec(raw, source="bench")


def ensure_data(folder: Path, rows: int, days: int, seed: int) -> list[Path]:
    marker = folder / f"ready-{rows}-{days}-{seed}"
    files = [folder / f"dt={START + dt.timedelta(days=d)}" / "part-0.parquet" for d in range(days)]
    if not marker.exists():
        for d, path in enumerate(files):
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(make_day(START + dt.timedelta(days=d), rows // days, seed), path)
        marker.touch()
    return files


def read_floor(files: list[Path]) -> int:
    return sum(pq.read_table(path).num_rows for path in files)


def contract_check(spec, base_uri: str, days: list[dt.date]) -> int:
    partitions = [read_partition(base_uri, day, None) for day in days]
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    result = evaluate_contract(
        spec.contract,
        partitions,
        interval_start=dt.datetime.combine(days[0], dt.time(), tzinfo=dt.UTC),
        interval_end=end,
        timestamp_column="ts",
        history_row_counts=[],
    )
    assert result.passed, result.summary()
    return result.rows


def pandera_check(files: list[Path]) -> int:
    import pandera.pandas as pandera

    checks = {"id": pandera.Column(str, unique=True, nullable=False), "ts": pandera.Column("datetime64[ns, UTC]", nullable=False)}
    checks |= {n: pandera.Column(float, pandera.Check.in_range(-1000, 1000), nullable=False) for n in FLOATS}
    checks |= {n: pandera.Column(int, pandera.Check.in_range(0, 99), nullable=False) for n in INTS}
    checks |= {n: pandera.Column(str, pandera.Check.isin(v), nullable=False) for n, v in CATEGORIES.items()}
    schema = pandera.DataFrameSchema(checks, strict=True, unique=list(checks))  # unique: no duplicate rows
    rows = 0
    frames = [pq.read_table(path).to_pandas() for path in files]
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    schema.validate(frame, lazy=True)
    rows += len(frame)
    return rows


def timed(function, *args) -> float:
    gc.collect()
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path(".local/bench/contract"))
    parser.add_argument("--no-pandera", action="store_true")
    args = parser.parse_args(argv)

    folder = args.folder.resolve()
    files = ensure_data(folder, args.rows, args.days, seed=1)
    base_uri = f"file://{folder}"
    days = [START + dt.timedelta(days=d) for d in range(args.days)]
    assert all(Path(partition_uri(folder.as_posix(), d)).is_dir() for d in days)
    spec = contract_spec(base_uri)

    contenders = {"read floor (pyarrow)": (read_floor, files), "contract check (read + rules)": (contract_check, spec, base_uri, days)}
    try:
        import pandera  # noqa: F401

        if not args.no_pandera:
            contenders["pandera (read + to_pandas + rules)"] = (pandera_check, files)
    except ImportError:
        print("pandera is not installed; skipping it (make bench installs it)", file=sys.stderr)

    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, (function, *call_args) in contenders.items():
            timings[name].append(timed(function, *call_args))

    floor = statistics.median(timings["read floor (pyarrow)"])
    print(f"\n{args.rows:,} rows x 20 columns in {args.days} partitions, median of {args.repeat} interleaved runs")
    print(f"{'contender':<38} {'median s':>9} {'x floor':>8}")
    results = {}
    for name, values in timings.items():
        median = statistics.median(values)
        results[name] = {"median_s": round(median, 3), "ratio_to_floor": round(median / floor, 2), "runs_s": [round(v, 3) for v in values]}
        print(f"{name:<38} {median:>9.2f} {median / floor:>8.2f}")
    out = Path(".local/bench/contract-results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
