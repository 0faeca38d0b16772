"""Benchmark: our vectorised KS vs scipy.stats.ks_2samp in a loop vs Evidently vs the sort floor.

1M reference rows vs 1M current rows, x 20 and x 100 features, seeded: a third of the
features do not drift, a third shift a little (0.005 to 0.05 standard deviations: the
range where KS p-values are costly) and a third shift a lot. All contenders run in this one
process, side by side; the report gives medians and ratios, never absolute goals.

    make bench            # or: python bench/drift_bench.py --rows 1000000 --features 20 100
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from mlops_airflow.stats.ks import ks_2samp_columns


def make_data(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(rows, features))
    shifts = np.concatenate([np.zeros(features - 2 * (features // 3)), rng.uniform(0.005, 0.05, features // 3), rng.uniform(0.2, 1.0, features // 3)])
    current = rng.normal(size=(rows, features)) + shifts
    return reference, current


def timed(function) -> float:
    gc.collect()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def sort_floor(reference, current):
    np.sort(reference, axis=0)
    np.sort(current, axis=0)


def scipy_loop(reference, current):
    return [ks_2samp(reference[:, j], current[:, j]) for j in range(reference.shape[1])]


def evidently(reference, current, **preset):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = [f"f{j}" for j in range(reference.shape[1])]
    definition = DataDefinition(numerical_columns=names)
    ref = Dataset.from_pandas(pd.DataFrame(reference, columns=names), data_definition=definition)
    cur = Dataset.from_pandas(pd.DataFrame(current, columns=names), data_definition=definition)
    Report([DataDriftPreset(**preset)]).run(cur, ref)


def agreement(reference, current) -> str:
    ours = ks_2samp_columns(reference, current)
    theirs = scipy_loop(reference, current)
    same_d = sum(ours.statistic[j] == t.statistic for j, t in enumerate(theirs))
    within = sum(abs(ours.pvalue[j] - t.pvalue) <= ours.pvalue_error[j] + 1e-9 for j, t in enumerate(theirs))
    worst = max(abs(ours.pvalue[j] - t.pvalue) for j, t in enumerate(theirs))
    return f"D equal to scipy's: {same_d}/{len(theirs)}; p within bound: {within}/{len(theirs)} (worst |dp| {worst:.2e})"


def run_one(args: argparse.Namespace, features: int, *, evidently_too: bool) -> None:
    reference, current = make_data(args.rows, features, args.seed)
    print(f"\n{args.rows:,} reference vs {args.rows:,} current rows x {features} features")
    print("  " + agreement(reference, current))
    fast = {
        "sort floor": lambda: sort_floor(reference, current),
        "ours": lambda: ks_2samp_columns(reference, current),
        "scipy ks_2samp loop": lambda: scipy_loop(reference, current),
    }
    times: dict[str, list[float]] = {name: [] for name in fast}
    for _ in range(args.repeat):
        for name, function in fast.items():  # interleaved: drift in machine load hits all alike
            times[name].append(timed(function))
    medians = {name: statistics.median(values) for name, values in times.items()}
    if evidently_too:
        medians["Evidently DataDriftPreset(num_method='ks')"] = timed(lambda: evidently(reference, current, num_method="ks"))
        medians["Evidently DataDriftPreset() defaults"] = timed(lambda: evidently(reference, current))
    floor, ours = medians["sort floor"], medians["ours"]
    print(f"  {'contender':<44}{'time':>9}{'vs floor':>10}{'ours faster by':>16}")
    for name, seconds in medians.items():
        print(f"  {name:<44}{seconds:>8.2f}s{seconds / floor:>9.2f}x{seconds / ours:>15.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--repeat", type=int, default=3, help="runs of the fast contenders (Evidently runs once)")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--evidently-up-to", type=int, default=1000, help="run Evidently only for feature counts up to this (it takes minutes)")
    args = parser.parse_args()
    for features in args.features:
        run_one(args, features, evidently_too=features <= args.evidently_up_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
