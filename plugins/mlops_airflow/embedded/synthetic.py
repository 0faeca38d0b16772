"""Synthetic customer-churn data: daily Parquet partitions for the demo and the tests.

Each day is generated from its own seed (the base seed and the date), so a day's rows
do not depend on which range was asked for: regenerating one day reproduces it byte
for byte. From ``DriftSettings.start`` on, chosen features shift (covariate drift) and,
optionally, the label's relationship to the features changes (concept drift): price
sensitivity rises (``change_label_relationship``, the demo's), and with ``concept`` the
contract and support calls lose their effect while the west region gains one.

Run ``python -m mlops_airflow.embedded.synthetic --help`` for the command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_airflow.core.partitions import days_between, write_partition

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

NUMERIC_FEATURES = ("tenure_months", "monthly_charges", "total_spend", "support_calls", "days_since_last_login")
CATEGORICAL_FEATURES = ("contract", "region", "payment_method")
TIMESTAMP_COLUMN = "event_ts"
ID_COLUMN = "customer_id"
LABEL_COLUMN = "churned"
LABELS_FILE = "labels.parquet"

CONTRACTS = ("month-to-month", "one-year", "two-year")
REGIONS = ("north", "south", "east", "west")
PAYMENT_METHODS = ("card", "bank_transfer", "electronic_check", "mailed_check")

# How far one unit of drift moves each feature (roughly one standard deviation).
_DRIFT_SCALE = {
    "tenure_months": -8.0,
    "monthly_charges": 20.0,
    "total_spend": 600.0,
    "support_calls": 1.5,
    "days_since_last_login": 6.0,
}


@dataclass(frozen=True)
class DriftSettings:
    """Drift injected from ``start`` (inclusive) on."""

    start: dt.date
    features: tuple[str, ...] = ("monthly_charges", "support_calls", "contract")
    magnitude: float = 1.0
    change_label_relationship: bool = True
    # How far the label's relationship moves beyond that (0: not at all; 1: the contract and support
    # calls lose their effect and the west region, which no feature pattern gave away before, churns
    # more). The demo's change (price sensitivity) barely moves a model's ranking; this one does.
    concept: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.features) - set(NUMERIC_FEATURES) - set(CATEGORICAL_FEATURES))
        if unknown:
            raise ValueError(f"cannot drift unknown features {unknown}; known: {list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)}")
        if self.magnitude < 0:
            raise ValueError(f"drift magnitude must be >= 0, got {self.magnitude}")
        if not 0 <= self.concept <= 1:
            raise ValueError(f"concept drift must be in [0, 1], got {self.concept}")


def _day_rng(seed: int, day: dt.date) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([seed, day.toordinal()])


def generate_day(day: dt.date, *, rows: int = 2000, seed: int = 7, drift: DriftSettings | None = None) -> pd.DataFrame:
    """One day's customer events, with the churn label."""
    import numpy as np
    import pandas as pd

    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    rng = _day_rng(seed, day)
    drifting = drift is not None and day >= drift.start
    shift = {f: (drift.magnitude if drifting and f in drift.features else 0.0) for f in NUMERIC_FEATURES + CATEGORICAL_FEATURES}

    contract_p = np.array([0.55, 0.25, 0.20])
    if shift["contract"]:
        contract_p = contract_p + np.array([0.25, -0.10, -0.15]) * min(shift["contract"], 1.0)
    contract = rng.choice(CONTRACTS, size=rows, p=contract_p / contract_p.sum())
    region = rng.choice(REGIONS, size=rows, p=[0.3, 0.3, 0.25, 0.15])
    payment = rng.choice(PAYMENT_METHODS, size=rows, p=[0.4, 0.25, 0.25, 0.1]).astype(object)

    # Integer columns with many ties: the KS test must handle them exactly.
    tenure = np.clip(rng.negative_binomial(2, 0.07, size=rows) + 1 + shift["tenure_months"] * _DRIFT_SCALE["tenure_months"], 1, 72)
    tenure = tenure.astype("int64")
    support_calls = rng.poisson(1.2 + shift["support_calls"] * _DRIFT_SCALE["support_calls"], size=rows).astype("int64")

    monthly = rng.normal(65.0 + shift["monthly_charges"] * _DRIFT_SCALE["monthly_charges"], 20.0, size=rows)
    monthly = np.round(np.clip(monthly, 18.0, None), 2)
    total_spend = tenure * monthly * rng.lognormal(0.0, 0.15, size=rows) + shift["total_spend"] * _DRIFT_SCALE["total_spend"]
    total_spend = np.round(np.clip(total_spend, 0.0, None), 2)
    last_login = rng.exponential(5.0, size=rows) + shift["days_since_last_login"] * _DRIFT_SCALE["days_since_last_login"]

    # A few missing values, as production data has.
    last_login[rng.random(rows) < 0.02] = np.nan
    payment[rng.random(rows) < 0.01] = None

    price_sensitivity = 0.045 if drifting and drift.change_label_relationship else 0.012
    concept = drift.concept if drifting else 0.0
    logit = (
        -1.6
        + 1.3 * (1.0 - concept) * (contract == "month-to-month")
        - 0.6 * (1.0 - concept) * (contract == "two-year")
        - 0.035 * tenure
        + 0.45 * (1.0 - concept) * support_calls
        + 1.5 * concept * (region == "west")
        + price_sensitivity * (monthly - 65.0)
        + 0.03 * np.nan_to_num(last_login, nan=5.0)
        + 0.3 * (payment == "electronic_check")
    )
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    start = pd.Timestamp(day, tz="UTC")
    offsets = np.sort(rng.integers(0, 86_400_000, size=rows))
    event_ts = start + pd.to_timedelta(offsets, unit="ms")

    return pd.DataFrame(
        {
            ID_COLUMN: [f"{day:%Y%m%d}-{i:06d}" for i in range(rows)],
            TIMESTAMP_COLUMN: event_ts,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_spend": total_spend,
            "support_calls": support_calls,
            "days_since_last_login": np.round(last_login, 3),
            "contract": contract,
            "region": region,
            "payment_method": payment,
            LABEL_COLUMN: churned,
        }
    )


def generate(
    base_uri: str,
    start: dt.date,
    end: dt.date,
    *,
    rows_per_day: int = 2000,
    seed: int = 7,
    drift: DriftSettings | None = None,
    labels_uri: str | None = None,
    labels_until: dt.date | None = None,
) -> list[str]:
    """Write one partition per day of ``[start, end)`` under ``base_uri``; returns the file URIs.

    With ``labels_uri``, each day's labels (``customer_id`` and ``churned``, as they would arrive
    late from another system) are also written to ``<labels_uri>/dt=<day>/labels.parquet``, for the
    days before ``labels_until`` (every day when it is not given): the days after it have no
    labels yet.
    """
    import pyarrow as pa

    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    written = []
    for day in days_between(start, end):
        frame = generate_day(day, rows=rows_per_day, seed=seed, drift=drift)
        written.append(write_partition(pa.Table.from_pandas(frame, preserve_index=False), base_uri, day))
        if labels_uri and (labels_until is None or day < labels_until):
            labels = pa.Table.from_pandas(frame[[ID_COLUMN, LABEL_COLUMN]], preserve_index=False)
            write_partition(labels, labels_uri, day, LABELS_FILE)
    return written


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlops_airflow.embedded.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="base URI or folder of the partitions")
    parser.add_argument("--start", required=True, type=dt.date.fromisoformat, help="first day (YYYY-MM-DD)")
    parser.add_argument("--end", required=True, type=dt.date.fromisoformat, help="day after the last (YYYY-MM-DD)")
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drift-from", type=dt.date.fromisoformat, help="inject drift from this day on")
    parser.add_argument("--drift-features", default="monthly_charges,support_calls,contract")
    parser.add_argument("--drift-magnitude", type=float, default=1.0)
    parser.add_argument("--no-label-drift", action="store_true", help="shift features only, keep the label relationship")
    parser.add_argument("--concept", type=float, default=0.0, help="0..1: how far the label's relationship to the features changes (see DriftSettings)")
    parser.add_argument("--labels-out", help="also write each day's labels (customer_id, churned) under this base URI or folder, as a late label feed")
    parser.add_argument("--labels-until", type=dt.date.fromisoformat, help="with --labels-out: only days before this one have labels yet (YYYY-MM-DD)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    from mlops_airflow.specs import normalise_uri

    drift = None
    try:
        if args.concept and not args.drift_from:
            raise ValueError("--concept changes the label from the drift day on: give --drift-from too")
        if args.labels_until and not args.labels_out:
            raise ValueError("--labels-until says which days have labels: give --labels-out too")
        if args.drift_from:
            drift = DriftSettings(
                start=args.drift_from,
                features=tuple(f for f in args.drift_features.split(",") if f),
                magnitude=args.drift_magnitude,
                change_label_relationship=not args.no_label_drift,
                concept=args.concept,
            )
        files = generate(
            normalise_uri(args.out),
            args.start,
            args.end,
            rows_per_day=args.rows_per_day,
            seed=args.seed,
            drift=drift,
            labels_uri=normalise_uri(args.labels_out) if args.labels_out else None,
            labels_until=args.labels_until,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} partitions of {args.rows_per_day} rows under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
