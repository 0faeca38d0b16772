from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.embedded.synthetic import (
    CATEGORICAL_FEATURES,
    LABEL_COLUMN,
    NUMERIC_FEATURES,
    TIMESTAMP_COLUMN,
    DriftSettings,
    generate,
    generate_day,
    main,
)

DAY = dt.date(2026, 2, 10)


class TestGenerateDay:
    def test_schema(self):
        frame = generate_day(DAY, rows=500)
        assert len(frame) == 500
        assert set(NUMERIC_FEATURES + CATEGORICAL_FEATURES + (TIMESTAMP_COLUMN, LABEL_COLUMN)) <= set(frame.columns)
        assert frame["tenure_months"].dtype == np.int64
        assert frame["support_calls"].dtype == np.int64
        assert frame["monthly_charges"].dtype == np.float64
        assert str(frame[TIMESTAMP_COLUMN].dt.tz) == "UTC"
        assert frame[TIMESTAMP_COLUMN].dt.date.eq(DAY).all()
        assert set(frame[LABEL_COLUMN].unique()) == {0, 1}
        assert frame["customer_id"].is_unique

    def test_realistic_quirks(self):
        frame = generate_day(DAY, rows=4000)
        # Integer columns with many ties, a few missing values, categoricals from fixed sets.
        assert frame["support_calls"].nunique() < 15
        assert frame["tenure_months"].duplicated().sum() > 3000
        assert 0 < frame["days_since_last_login"].isna().sum() < 200
        assert 0 < frame["payment_method"].isna().sum() < 100
        assert set(frame["contract"]) == {"month-to-month", "one-year", "two-year"}
        assert 0.1 < frame[LABEL_COLUMN].mean() < 0.5

    def test_same_day_same_rows_whatever_the_range(self):
        pd.testing.assert_frame_equal(generate_day(DAY, rows=200, seed=3), generate_day(DAY, rows=200, seed=3))
        assert not generate_day(DAY, rows=200, seed=3).equals(generate_day(DAY, rows=200, seed=4))
        assert not generate_day(DAY, rows=200).equals(generate_day(DAY + dt.timedelta(days=1), rows=200))

    def test_rejects_no_rows(self):
        with pytest.raises(ValueError, match="rows must be >= 1"):
            generate_day(DAY, rows=0)


class TestDrift:
    def test_covariate_shift_starts_on_the_drift_day(self):
        drift = DriftSettings(start=DAY, features=("monthly_charges",), change_label_relationship=False)
        before = generate_day(DAY - dt.timedelta(days=1), rows=3000, drift=drift)
        after = generate_day(DAY, rows=3000, drift=drift)
        baseline = generate_day(DAY, rows=3000)
        assert before.equals(generate_day(DAY - dt.timedelta(days=1), rows=3000))
        assert after["monthly_charges"].mean() - baseline["monthly_charges"].mean() > 15
        # Undrifted features are untouched.
        pd.testing.assert_series_equal(after["tenure_months"], baseline["tenure_months"])

    def test_categorical_shift(self):
        drift = DriftSettings(start=DAY, features=("contract",), change_label_relationship=False)
        after = generate_day(DAY, rows=4000, drift=drift)
        baseline = generate_day(DAY, rows=4000)
        share = lambda f: (f["contract"] == "month-to-month").mean()  # noqa: E731
        assert share(after) - share(baseline) > 0.15

    def test_label_relationship_changes(self):
        drift = DriftSettings(start=DAY, features=(), change_label_relationship=True)
        after = generate_day(DAY, rows=6000, drift=drift)
        baseline = generate_day(DAY, rows=6000)
        pd.testing.assert_series_equal(after["monthly_charges"], baseline["monthly_charges"])
        expensive = after["monthly_charges"] > 85
        assert after.loc[expensive, LABEL_COLUMN].mean() - baseline.loc[expensive, LABEL_COLUMN].mean() > 0.1

    def test_concept_drift_moves_the_label_alone(self):
        drift = DriftSettings(start=DAY, features=(), change_label_relationship=False, concept=1.0)
        after, baseline = generate_day(DAY, rows=6000, drift=drift), generate_day(DAY, rows=6000)
        pd.testing.assert_frame_equal(after.drop(columns=LABEL_COLUMN), baseline.drop(columns=LABEL_COLUMN))
        by_region = lambda f: f.loc[f["region"] == "west", LABEL_COLUMN].mean() - f.loc[f["region"] != "west", LABEL_COLUMN].mean()  # noqa: E731
        assert abs(by_region(baseline)) < 0.05
        assert by_region(after) > 0.15, "the west region now tells who churns"
        by_contract = lambda f: f.loc[f["contract"] == "month-to-month", LABEL_COLUMN].mean() - f.loc[f["contract"] == "two-year", LABEL_COLUMN].mean()  # noqa: E731
        assert by_contract(baseline) > 0.2
        assert abs(by_contract(after)) < 0.1, "the contract no longer tells who churns"
        with pytest.raises(ValueError, match=r"concept drift must be in \[0, 1\]"):
            DriftSettings(start=DAY, concept=1.5)

    def test_unknown_feature_is_rejected(self):
        with pytest.raises(ValueError, match="cannot drift unknown features"):
            DriftSettings(start=DAY, features=("shoe_size",))


class TestGenerate:
    def test_writes_one_partition_per_day(self, tmp_path):
        files = generate(f"file://{tmp_path}", DAY, DAY + dt.timedelta(days=3), rows_per_day=50)
        assert [p.rsplit("/", 2)[-2] for p in files] == ["dt=2026-02-10", "dt=2026-02-11", "dt=2026-02-12"]
        frame = pd.read_parquet(tmp_path / "dt=2026-02-11" / "part-0.parquet")
        pd.testing.assert_frame_equal(frame, generate_day(DAY + dt.timedelta(days=1), rows=50))

    def test_days_are_the_ones_earlier_versions_generated(self):
        """A golden check: tests, demos and drift onsets rely on a day's rows never changing."""
        hashed = lambda frame: int(pd.util.hash_pandas_object(frame, index=True).sum())  # noqa: E731
        assert hashed(generate_day(DAY, rows=500)) == 9220725335484521840
        assert hashed(generate_day(DAY, rows=500, drift=DriftSettings(start=DAY))) == 3197851453483741044

    def test_cli_refuses_a_concept_drift_without_a_drift_day(self, tmp_path, capsys):
        assert main(["--out", str(tmp_path), "--start", "2026-02-10", "--end", "2026-02-12", "--concept", "0.5"]) == 2
        assert "give --drift-from too" in capsys.readouterr().err
        assert main(["--out", str(tmp_path), "--start", "2026-02-10", "--end", "2026-02-12", "--drift-from", "2026-02-11", "--concept", "1.5"]) == 2
        assert "concept drift must be in [0, 1]" in capsys.readouterr().err

    def test_cli(self, tmp_path, capsys):
        code = main(["--out", str(tmp_path), "--start", "2026-02-10", "--end", "2026-02-12", "--rows-per-day", "20", "--drift-from", "2026-02-11"])
        assert code == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dt=2026-02-10", "dt=2026-02-11"]
        assert "wrote 2 partitions" in capsys.readouterr().out

    def test_cli_rejects_an_empty_range(self, tmp_path, capsys):
        assert main(["--out", str(tmp_path), "--start", "2026-02-10", "--end", "2026-02-10"]) == 2
        assert "must be after start" in capsys.readouterr().err

    def test_cli_writes_late_labels_for_the_days_that_have_them(self, tmp_path, capsys):
        events, labels = tmp_path / "events", tmp_path / "labels"
        args = ["--out", str(events), "--start", "2026-02-10", "--end", "2026-02-13", "--rows-per-day", "30", "--labels-out", str(labels)]
        assert main([*args, "--labels-until", "2026-02-12"]) == 0
        assert sorted(p.name for p in labels.iterdir()) == ["dt=2026-02-10", "dt=2026-02-11"]
        written = pd.read_parquet(labels / "dt=2026-02-11" / "labels.parquet")
        day = generate_day(DAY + dt.timedelta(days=1), rows=30)
        pd.testing.assert_frame_equal(written, day[["customer_id", LABEL_COLUMN]])
        assert main(["--out", str(events), "--start", "2026-02-10", "--end", "2026-02-11", "--labels-until", "2026-02-11"]) == 2
        assert "give --labels-out too" in capsys.readouterr().err
