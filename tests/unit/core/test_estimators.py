from __future__ import annotations

import datetime as dt
import json
import warnings

import pytest
from helpers import DATA_DAYS, DATA_END

from mlops_airflow.core.estimators import TRUSTED_TYPES, build_pipeline, gpu_visible, resolve_xgboost_device
from mlops_airflow.embedded.synthetic import generate_day
from mlops_airflow.training.__main__ import main

NUMERIC = ["tenure_months", "monthly_charges", "total_spend", "support_calls", "days_since_last_login"]
CATEGORICAL = ["contract", "region", "payment_method"]


def frame():
    data = generate_day(dt.date(2026, 1, 5), rows=400, seed=3)
    features = data[NUMERIC + CATEGORICAL].copy()
    features[NUMERIC] = features[NUMERIC].astype(float)
    features[CATEGORICAL] = features[CATEGORICAL].astype(object).where(features[CATEGORICAL].notna(), None)
    return features, data["churned"]


@pytest.mark.parametrize("kind", sorted(TRUSTED_TYPES))
def test_every_kind_fits_and_is_seeded(kind):
    x, y = frame()
    first = build_pipeline(kind, {}, numeric=NUMERIC, categorical=CATEGORICAL, seed=5).fit(x, y).predict_proba(x)
    second = build_pipeline(kind, {}, numeric=NUMERIC, categorical=CATEGORICAL, seed=5).fit(x, y).predict_proba(x)
    assert first.shape == (len(x), 2)
    assert (first == second).all()


def test_unknown_param_is_a_type_error():
    with pytest.raises(TypeError):
        build_pipeline("hist_gradient_boosting", {"max_iterations": 3}, numeric=NUMERIC, categorical=CATEGORICAL, seed=1)


class TestGpuPath:
    def test_cuda_falls_back_to_cpu_with_a_warning(self):
        with pytest.warns(RuntimeWarning, match="training on the CPU"):
            pipeline = build_pipeline("xgboost", {"device": "cuda", "n_estimators": 5}, numeric=NUMERIC, categorical=CATEGORICAL, seed=1)
        assert pipeline.named_steps["estimator"].get_params()["device"] == "cpu"
        x, y = frame()
        pipeline.fit(x, y)

    def test_cpu_asks_for_nothing(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_xgboost_device("cpu") == "cpu"
            assert resolve_xgboost_device(None) == "cpu"

    @pytest.mark.parametrize("value", ["", "-1"])
    def test_hidden_devices_are_not_visible(self, monkeypatch, value):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert gpu_visible() is False

    def test_xgboost_model_trains_logs_and_loads(self, churn_data, small_spec_file, mlflow_store, tmp_path):
        import mlflow
        import yaml

        raw = yaml.safe_load(small_spec_file.read_text())
        raw["training"]["estimator"] = {"kind": "xgboost", "params": {"n_estimators": 20, "device": "cuda"}}
        small_spec_file.write_text(yaml.safe_dump(raw))
        start = DATA_END - dt.timedelta(days=DATA_DAYS)
        argv = ["--spec", str(small_spec_file), "--window-start", str(start), "--window-end", str(DATA_END), "--result-path", str(tmp_path / "r.json")]
        with pytest.warns(RuntimeWarning, match="training on the CPU"):
            assert main(argv) == 0
        result = json.loads((tmp_path / "r.json").read_text())
        x, _ = frame()
        assert mlflow.pyfunc.load_model(result["model_uri"]).predict(x.head(3)).shape == (3, 2)
