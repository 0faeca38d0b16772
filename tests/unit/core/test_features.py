"""prepare_features: the spec's columns in the spec's order, numeric as float64, categoricals as objects with None for missing."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from mlops_airflow.core.features import FeatureError, prepare_features
from mlops_airflow.specs.model import FeatureSpec

SPEC = SimpleNamespace(features=FeatureSpec(numeric=("tenure", "charges"), categorical=("contract",)))


def frame(**columns):
    import pandas as pd

    data = {"tenure": [1, 2], "charges": [10.5, 20.0], "contract": ["monthly", "yearly"], "churned": [0, 1]}
    return pd.DataFrame({**data, **columns})


class TestPrepareFeatures:
    def test_selects_the_spec_columns_in_its_order_with_numeric_as_float(self):
        source = frame()[["churned", "contract", "charges", "tenure"]]
        features = prepare_features(source, SPEC)
        assert list(features.columns) == ["tenure", "charges", "contract"]
        assert [str(t) for t in features.dtypes] == ["float64", "float64", "object"]
        assert features.to_dict("list") == {"tenure": [1.0, 2.0], "charges": [10.5, 20.0], "contract": ["monthly", "yearly"]}

    def test_leaves_the_input_frame_as_it_was(self):
        source = frame()
        prepare_features(source, SPEC)
        assert str(source["tenure"].dtype) == "int64"
        assert list(source.columns) == ["tenure", "charges", "contract", "churned"]

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            pytest.param([None, 3], [None, 3.0], id="missing-is-nan"),
            pytest.param(["1.5", "2"], [1.5, 2.0], id="numeric-text"),
            pytest.param([True, False], [1.0, 0.0], id="booleans"),
        ],
    )
    def test_numeric_values(self, values, expected):
        got = prepare_features(frame(tenure=values), SPEC)["tenure"].tolist()
        assert [None if math.isnan(v) else v for v in got] == expected

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            pytest.param([None, "yearly"], [None, "yearly"], id="none"),
            pytest.param([math.nan, "yearly"], [None, "yearly"], id="nan-is-none"),
            pytest.param([1, 2], [1, 2], id="numbers-stay-numbers"),
        ],
    )
    def test_categorical_values(self, values, expected):
        got = prepare_features(frame(contract=values), SPEC)["contract"].tolist()
        assert got == expected
        assert [type(v) for v in got] == [type(v) for v in expected]

    def test_nullable_integers_become_nan(self):
        import pandas as pd

        features = prepare_features(frame(tenure=pd.array([1, None], dtype="Int64")), SPEC)
        assert str(features["tenure"].dtype) == "float64"
        assert features["tenure"].iloc[0] == 1.0
        assert math.isnan(features["tenure"].iloc[1])

    @pytest.mark.parametrize(
        ("columns", "match"),
        [
            pytest.param({}, r"feature columns \['charges'\] are missing \(present: \['churned', 'contract', 'tenure'\]\)", id="missing-column"),
            pytest.param({"tenure": ["one", "two"]}, r"numeric feature 'tenure' is not numeric", id="text"),
            pytest.param({"charges": [1.0, math.inf]}, r"numeric features \['charges'\] contain \+-inf", id="inf"),
            pytest.param({"tenure": [-math.inf, 1.0], "charges": ["inf", "2"]}, r"numeric features \['tenure', 'charges'\] contain \+-inf", id="both-inf"),
        ],
    )
    def test_refusals_name_the_problem(self, columns, match):
        source = frame(**columns)
        if not columns:
            source = source.drop(columns=["charges"])
        with pytest.raises(FeatureError, match=match):
            prepare_features(source, SPEC)

    def test_a_datetime_is_not_a_number(self):
        import pandas as pd

        with pytest.raises(FeatureError, match="numeric feature 'charges' is not numeric"):
            prepare_features(frame(charges=pd.to_datetime(["2026-03-01", "2026-03-02"])), SPEC)

    def test_the_demo_spec(self, churn_spec):
        from helpers import DATA_END

        from mlops_airflow.embedded.synthetic import generate_day

        features = prepare_features(generate_day(DATA_END, rows=50, seed=1), churn_spec)
        assert tuple(features.columns) == churn_spec.features.columns
        assert "churned" not in features.columns
