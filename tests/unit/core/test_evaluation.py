"""Scoring both versions on the same rows: every way an evaluation cannot be computed fails closed."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.core.evaluation import (
    Candidate,
    EvaluationRows,
    check_no_leakage,
    evaluate,
    evaluation_window,
    fit_window,
    load_rows,
    predict_proba,
    summary_table,
)
from mlops_airflow.core.payloads import EvaluationReport
from mlops_airflow.stats.gating import EvaluationError

START, END = dt.date(2026, 2, 22), dt.date(2026, 3, 1)


def rows(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "signal": y + rng.normal(0, 0.8, n),
            "contract": rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.5, 0.4, 0.1]),
        }
    )
    return EvaluationRows(frame=frame, y=y, start=START, end=END)


class Scorer:
    """A model: probability from the ``signal`` column, optionally noisier, optionally broken."""

    def __init__(self, noise=0.0, seed=1, columns=("signal", "contract"), transform=None):
        self.noise, self.seed, self.transform = noise, seed, transform
        self.metadata = SimpleNamespace(get_input_schema=lambda: SimpleNamespace(input_names=lambda: list(columns), has_input_names=lambda: True))

    def predict(self, frame):
        score = frame["signal"].to_numpy() + np.random.default_rng(self.seed).normal(0, self.noise + 1e-9, len(frame))
        p = 1 / (1 + np.exp(-2 * (score - 0.5)))
        proba = np.column_stack([1 - p, p])
        return self.transform(frame, proba) if self.transform else proba


def candidate(model, role="challenger", version="2"):
    return Candidate(role, version, f"run-{version}", model)


class TestWindows:
    def test_evaluation_window_is_the_newest_days(self, churn_spec):
        assert evaluation_window(churn_spec, END) == (END - dt.timedelta(days=churn_spec.promotion.evaluation_days), END)

    def test_fit_window_from_training_params(self):
        assert fit_window({"window_start": "2026-02-01", "validation_start": "2026-02-22"}) == (dt.date(2026, 2, 1), dt.date(2026, 2, 22))
        assert fit_window({}) is None

    @pytest.mark.parametrize(
        ("fit", "overlaps"),
        [
            pytest.param((dt.date(2026, 2, 1), START), False, id="adjacent"),
            pytest.param((dt.date(2026, 2, 1), START + dt.timedelta(days=1)), True, id="one-day-overlap"),
            pytest.param((dt.date(2026, 3, 1), dt.date(2026, 3, 20)), False, id="fit-later"),
            pytest.param((dt.date(2026, 2, 25), dt.date(2026, 3, 20)), True, id="fit-on-the-window"),
            pytest.param(None, False, id="unknown"),
        ],
    )
    def test_leakage(self, fit, overlaps):
        if overlaps:
            with pytest.raises(EvaluationError, match="overlaps the days champion v1 was fit on"):
                check_no_leakage("champion v1", fit, START, END)
        else:
            check_no_leakage("champion v1", fit, START, END)


class TestLoadRows:
    def test_reads_labelled_rows_as_class_indices(self, churn_spec, churn_data):
        data = load_rows(churn_spec, START, END)
        assert len(data.y) == 7 * 300
        assert set(np.unique(data.y)) == {0, 1}
        assert data.frame["tenure_months"].dtype == "float64"
        assert "customer_id" in data.frame.columns  # extra columns pass through for older models

    def test_an_empty_window_fails_closed(self, churn_spec, churn_data):
        with pytest.raises(EvaluationError, match="no rows"):
            load_rows(churn_spec, dt.date(2020, 1, 1), dt.date(2020, 1, 8))


class TestPredictProba:
    def test_checked_output(self):
        proba = predict_proba(candidate(Scorer()), rows(), 2)
        assert proba.shape == (1200, 2)

    @pytest.mark.parametrize(
        ("model", "message"),
        [
            pytest.param(Scorer(columns=("signal", "age")), r"expects columns \['age'\]", id="signature-mismatch"),
            pytest.param(Scorer(transform=lambda f, p: p[:, :1]), r"shape \(1200, 1\); expected \(1200, 2\)", id="missing-class"),
            pytest.param(Scorer(transform=lambda f, p: np.where(f[["signal"]].to_numpy() > 2, np.nan, p)), "NaN or infinite", id="nan"),
            pytest.param(Scorer(transform=lambda f, p: 1 / 0), "ZeroDivisionError", id="model-raises"),
        ],
    )
    def test_fails_closed(self, model, message):
        with pytest.raises(EvaluationError, match=message):
            predict_proba(candidate(model), rows(), 2)


class TestEvaluate:
    def test_first_model_is_judged_on_the_minimums_alone(self, churn_spec):
        report = evaluate(churn_spec, rows(), candidate(Scorer()), None)
        assert report.recommendation == "promote"
        assert [g["name"] for g in report.gates] == ["minimum roc_auc", "maximum log_loss"]
        assert report.champion is None
        assert report.bootstrap is None
        assert EvaluationReport.from_xcom(json.loads(json.dumps(report.to_xcom()))) == report  # travels through XCom as JSON

    def test_better_challenger_is_promoted_with_the_bootstrap_on_record(self, churn_spec):
        report = evaluate(churn_spec, rows(), candidate(Scorer()), candidate(Scorer(noise=1.5), "champion", "1"))
        assert report.recommendation == "promote", report.reasons
        assert report.bootstrap["lower"] > 0
        assert report.bootstrap["resamples"] == churn_spec.promotion.bootstrap_resamples

    def test_worse_challenger_is_rejected(self, churn_spec):
        report = evaluate(churn_spec, rows(), candidate(Scorer(noise=1.5)), candidate(Scorer(), "champion", "1"))
        assert report.recommendation == "reject"
        assert any(r.startswith("non-inferiority roc_auc") for r in report.reasons)

    def test_a_segment_that_regresses(self, churn_spec):
        def flip_two_year(frame, proba):
            mask = (frame["contract"] == "two-year").to_numpy()
            proba[mask] = proba[mask][:, ::-1]
            return proba

        report = evaluate(churn_spec, rows(4000), candidate(Scorer(transform=flip_two_year)), candidate(Scorer(), "champion", "1"))
        failed = [g["name"] for g in report.gates if not g["passed"]]
        assert "segment contract=two-year" in failed
        assert "segment contract=one-year" not in failed

    def test_small_and_one_class_segments_are_listed_not_judged(self, churn_spec):
        data = rows(1200)
        y = data.y.copy()
        y[(data.frame["contract"] == "two-year").to_numpy()] = 0
        data = EvaluationRows(frame=data.frame, y=y, start=START, end=END)
        report = evaluate(churn_spec, data, candidate(Scorer()), candidate(Scorer(), "champion", "1"))
        skipped = {s["value"]: s["skipped"] for s in report.segments}
        assert "not defined here" in skipped["two-year"]
        assert skipped["month-to-month"] is None
        assert not any(g["name"] == "segment contract=two-year" for g in report.gates)

    def test_one_class_window_fails_closed(self, churn_spec):
        data = rows()
        data = EvaluationRows(frame=data.frame, y=np.zeros_like(data.y), start=START, end=END)
        with pytest.raises(EvaluationError, match="roc_auc"):
            evaluate(churn_spec, data, candidate(Scorer()), None)

    def test_summary_table(self, churn_spec):
        report = evaluate(churn_spec, rows(), candidate(Scorer()), candidate(Scorer(noise=1.5), "champion", "1"))
        table = summary_table(report)
        assert "| metric | champion v1 | challenger v2 |" in table
        assert "| non-inferiority roc_auc | pass |" in table
        assert table.endswith("Recommendation: **promote**")
