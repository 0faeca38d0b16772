"""Drift over real partitions: the window, the onset, the summary and its run id."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from helpers import DATA_END, DRIFT_START, write_drift_data, write_drift_spec

from mlops_airflow.core.drift_windows import check_window, drift_features, drift_run_id, summary
from mlops_airflow.embedded.synthetic import generate_day
from mlops_airflow.specs import load_spec


@pytest.fixture
def reference():
    return generate_day(DATA_END - dt.timedelta(days=30), rows=3000, seed=99).drop(columns=["churned"])


def spec_for(tmp_path, **drift):
    return load_spec(write_drift_spec(tmp_path, tmp_path / "data", **drift))


def test_drift_is_found_with_its_onset(tmp_path, reference):
    write_drift_data(tmp_path / "data")
    spec = spec_for(tmp_path, window_days=2, lookback_days=7)
    check = check_window(reference, spec, DATA_END)
    assert check.drifted
    assert set(check.assessment.drifted_features) >= {"monthly_charges", "contract"}
    assert (check.window_start, check.window_end, check.rows) == (DATA_END - dt.timedelta(days=2), DATA_END, 1200)
    assert check.onset == DRIFT_START  # three drifted days, found one by one
    result = summary(check, spec, "4")
    assert result.retrain_run_id == drift_run_id(DRIFT_START, DATA_END) == f"drift__{DRIFT_START}__{DATA_END}"
    assert result.backfill_days == (DRIFT_START, DATA_END - dt.timedelta(days=1))
    assert result.features["monthly_charges"].verdict == "drift"
    pd.io.json.ujson_dumps(result.to_xcom())  # JSON only: it travels as XCom and as a run's conf


def test_no_drift_in_undrifted_data(tmp_path, reference):
    write_drift_data(tmp_path / "data", drifted=False)
    check = check_window(reference, spec_for(tmp_path, window_days=2), DATA_END)
    assert not check.drifted
    assert check.onset is None
    assert check.assessment.tested


def test_the_watched_features_follow_the_spec(tmp_path):
    spec = spec_for(tmp_path, features=["monthly_charges", "contract"])
    assert drift_features(spec) == (["monthly_charges"], ["contract"])
    assert drift_features(spec_for(tmp_path, features=[]))[0] == list(spec.features.numeric)


@pytest.mark.parametrize(
    ("feature", "name"),
    [
        pytest.param("monthly_charges", "monthly_charges", id="plain"),
        pytest.param("(all features)", "all_features", id="the multivariate test"),
        pytest.param("price (€)", "price", id="characters MLflow refuses"),
        pytest.param("a/b c-d.e", "a/b c-d.e", id="characters MLflow keeps"),
    ],
)
def test_history_metric_names_are_keys_mlflow_takes(feature, name):
    from mlops_airflow.core.drift_windows import history_metric_name

    assert history_metric_name(feature) == name
