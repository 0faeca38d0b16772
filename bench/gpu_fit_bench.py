"""Benchmark: XGBoost fit time on the GPU (device="cuda") vs the CPU, same data, same machine.

Run where a GPU is visible; prints a table and writes JSON. Uses the package's own
pipeline (`build_pipeline("xgboost", ...)`) and the demo data generator.

    python bench/gpu_fit_bench.py --rows 4000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from mlops_airflow.core.estimators import build_pipeline, gpu_visible
from mlops_airflow.embedded.synthetic import CATEGORICAL_FEATURES, LABEL_COLUMN, NUMERIC_FEATURES, generate_day


def make_data(rows: int, days: int = 40):
    import pandas as pd

    per_day = rows // days
    frame = pd.concat([generate_day(dt.date(2026, 1, 1) + dt.timedelta(days=d), rows=per_day, seed=1) for d in range(days)], ignore_index=True)
    features = frame[list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)].copy()
    features[list(NUMERIC_FEATURES)] = features[list(NUMERIC_FEATURES)].astype("float64")
    features[list(CATEGORICAL_FEATURES)] = features[list(CATEGORICAL_FEATURES)].astype(object).where(features[list(CATEGORICAL_FEATURES)].notna(), None)
    return features, frame[LABEL_COLUMN]


def fit(device: str, x, y, x_test, y_test, params: dict) -> dict:
    from sklearn.metrics import roc_auc_score

    pipeline = build_pipeline("xgboost", {**params, "device": device}, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES, seed=7)
    started = time.perf_counter()
    pipeline.fit(x, y)
    seconds = time.perf_counter() - started
    used = pipeline.named_steps["estimator"].get_params()["device"]
    auc = roc_auc_score(y_test, pipeline.predict_proba(x_test)[:, 1])
    return {"device": used, "fit_s": round(seconds, 2), "roc_auc": round(float(auc), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".local/bench")) / "gpu-fit.json")
    args = parser.parse_args()

    import xgboost

    print(f"xgboost {xgboost.__version__}, CUDA build: {xgboost.build_info().get('USE_CUDA')}, GPU visible: {gpu_visible()}, CPU cores: {os.cpu_count()}")
    started = time.perf_counter()
    x, y = make_data(args.rows + args.rows // 4)
    x_train, y_train, x_test, y_test = x.iloc[: args.rows], y.iloc[: args.rows], x.iloc[args.rows :], y.iloc[args.rows :]
    print(f"data: {len(x_train):,} training rows, {len(x_test):,} test rows in {time.perf_counter() - started:.1f} s")
    params = {"n_estimators": args.trees, "max_depth": 8, "learning_rate": 0.1}
    fit("cuda", x_train.head(10_000), y_train.head(10_000), x_test.head(1000), y_test.head(1000), params)  # warm-up: CUDA context
    results = {"rows": len(x_train), "trees": args.trees, "runs": []}
    for device in ("cuda", "cpu", "cuda"):
        result = fit(device, x_train, y_train, x_test, y_test, params)
        results["runs"].append(result)
        print(f"{result['device']:>5}: fit {result['fit_s']:8.2f} s   ROC AUC {result['roc_auc']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
