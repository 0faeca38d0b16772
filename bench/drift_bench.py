"""Benchmark: our vectorised KS vs scipy.stats.ks_2samp in a loop vs Evidently vs the sort floor.

1M reference rows vs 1M current rows, x 20 features under no drift, a small shift (0.005 to
0.05 standard deviations: where KS p-values are costly) and a mix (a third of each and a
third shifted a lot); x 100 features, mixed. All contenders run in this one process, side
by side; the report gives medians and ratios, and says whether the ratio goals are met.

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

from mlops_airflow.stats.ks import default_workers, ks_2samp_columns

SCENARIOS = ("no drift", "small shift", "mixed")
GOALS = {"no drift": 3.0, "small shift": 6.0}  # ours at least this many times faster than scipy's loop
FLOOR_GOAL = 1.5  # ours within this many times the all-core sort floor


def make_data(rows: int, features: int, seed: int, scenario: str = "mixed") -> tuple[np.ndarray, np.ndarray]:
    """``no drift``: every column from one distribution. ``small shift``: every column shifted by 0.005
    to 0.05 standard deviations (where scipy's p-values are costly). ``mixed``: a third of each
    kind and a third shifted a lot."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(rows, features))
    if scenario == "no drift":
        shifts = np.zeros(features)
    elif scenario == "small shift":
        shifts = rng.uniform(0.005, 0.05, features)
    else:
        shifts = np.concatenate([np.zeros(features - 2 * (features // 3)), rng.uniform(0.005, 0.05, features // 3), rng.uniform(0.2, 1.0, features // 3)])
    current = rng.normal(size=(rows, features)) + shifts
    return reference, current


def timed(function) -> float:
    gc.collect()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def sort_floor(reference, current):
    """Sorting every column of both samples, columns spread over all cores: no column-wise KS can take less."""
    from concurrent.futures import ThreadPoolExecutor

    def sort_column(column: int) -> None:
        np.sort(reference[:, column])
        np.sort(current[:, column])

    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        list(pool.map(sort_column, range(reference.shape[1])))


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
    """D, p-values within their bound, and Benjamini-Hochberg decisions at 5%: ours against scipy's."""
    from scipy.stats import false_discovery_control

    from mlops_airflow.stats.drift_assessment import DriftThresholds, assess_drift

    ours = ks_2samp_columns(reference, current)
    theirs = scipy_loop(reference, current)
    same_d = sum(ours.statistic[j] == t.statistic for j, t in enumerate(theirs))
    within = sum(abs(ours.pvalue[j] - t.pvalue) <= ours.pvalue_error[j] + 1e-9 for j, t in enumerate(theirs))
    worst = max(abs(ours.pvalue[j] - t.pvalue) for j, t in enumerate(theirs))
    names = [f"f{j}" for j in range(reference.shape[1])]
    decided = assess_drift(
        numeric_names=names, reference_numeric=reference, current_numeric=current, thresholds=DriftThresholds(alpha=0.05, min_effect=0.0, min_samples=1)
    )
    expected = false_discovery_control([t.pvalue for t in theirs]) <= 0.05
    same = sum(f.drifted == bool(e) for f, e in zip(decided.features, expected, strict=True))
    return (
        f"D equal to scipy's: {same_d}/{len(theirs)}; p within bound: {within}/{len(theirs)} (worst |dp| {worst:.2e}); "
        f"drift decisions equal to scipy's: {same}/{len(theirs)} ({int(expected.sum())} drifted)"
    )


def run_one(args: argparse.Namespace, features: int, scenario: str, *, evidently_too: bool) -> None:
    reference, current = make_data(args.rows, features, args.seed, scenario)
    print(f"\n{args.rows:,} reference vs {args.rows:,} current rows x {features} features, {scenario}")
    print("  " + agreement(reference, current))
    fast = {
        "sort floor (all cores)": lambda: sort_floor(reference, current),
        "ours": lambda: ks_2samp_columns(reference, current),
        "ours on one core": lambda: ks_2samp_columns(reference, current, workers=1),
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
    floor, ours = medians["sort floor (all cores)"], medians["ours"]
    print(f"  {'contender':<44}{'time':>9}{'vs floor':>10}{'ours faster by':>16}")
    for name, seconds in medians.items():
        print(f"  {name:<44}{seconds:>8.2f}s{seconds / floor:>9.2f}x{seconds / ours:>15.1f}x")
    goals = [f"within {FLOOR_GOAL}x of the floor: {'met' if ours / floor <= FLOOR_GOAL else 'NOT met'}"]
    if scenario in GOALS:
        speedup = medians["scipy ks_2samp loop"] / ours
        goals.insert(0, f"at least {GOALS[scenario]:g}x scipy's loop: {'met' if speedup >= GOALS[scenario] else 'NOT met'}")
    print(f"  goals ({default_workers()} cores): " + "; ".join(goals))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--repeat", type=int, default=3, help="runs of the fast contenders (Evidently runs once)")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--evidently-up-to", type=int, default=1000, help="run Evidently only for feature counts up to this (it takes minutes)")
    args = parser.parse_args()
    for features in args.features:
        for scenario in SCENARIOS if features == min(args.features) else ("mixed",):
            run_one(args, features, scenario, evidently_too=scenario == "mixed" and features <= args.evidently_up_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
