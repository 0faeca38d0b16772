"""Estimator pipelines, keyed by the spec's ``training.estimator.kind``.

Each pipeline takes the raw feature frame (numeric columns as float, categoricals as
strings with missing values) so the logged model serves raw rows as they arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MISSING_CATEGORY = "__missing__"

# Types that MLflow's skops serialisation may load for each kind, reviewed by hand: the
# models are ours, written by the training entrypoint. A type missing here fails the
# log_model call instead of silently trusting whatever the pipeline happens to hold.
TRUSTED_TYPES: dict[str, tuple[str, ...]] = {
    "hist_gradient_boosting": (
        "functools.partial",
        "numpy.dtype",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils.validation.check_array",
    ),
    "random_forest": ("numpy.dtype", "sklearn.tree._tree.Tree"),
    "logistic_regression": ("numpy.dtype",),
    "xgboost": ("numpy.dtype", "xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"),
}


def gpu_visible() -> bool:
    """Whether a CUDA device is visible to this process (without importing a CUDA runtime)."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return False
    return any(os.path.exists(f"/dev/nvidia{i}") for i in range(16))


def resolve_xgboost_device(requested: str | None) -> str:
    """The XGBoost ``device``: ``cuda`` when asked for and possible, else ``cpu`` with a warning."""
    import warnings

    if not requested or not str(requested).startswith("cuda"):
        return requested or "cpu"
    import xgboost

    if not xgboost.build_info().get("USE_CUDA", False):
        warnings.warn(f"device={requested!r} asked for, but this XGBoost build has no CUDA support; training on the CPU", RuntimeWarning, stacklevel=2)
        return "cpu"
    if not gpu_visible():
        warnings.warn(f"device={requested!r} asked for, but no GPU is visible; training on the CPU", RuntimeWarning, stacklevel=2)
        return "cpu"
    return str(requested)


def _categorical_encoder(*, one_hot: bool):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    imputer = SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)
    if one_hot:
        return make_pipeline(imputer, OneHotEncoder(handle_unknown="ignore", sparse_output=False))
    return make_pipeline(imputer, OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))


def build_pipeline(kind: str, params: Mapping[str, Any], *, numeric: Sequence[str], categorical: Sequence[str], seed: int):
    """A fitted-ready scikit-learn pipeline for ``kind``; unknown params fail loudly."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import StandardScaler

    numeric, categorical = list(numeric), list(categorical)
    params = dict(params)
    if kind == "hist_gradient_boosting":
        # Native missing-value and categorical support: no imputation of numerics.
        transformer = ColumnTransformer(
            [("numeric", "passthrough", numeric), ("categorical", _categorical_encoder(one_hot=False), categorical)],
            verbose_feature_names_out=False,
        )
        mask = [False] * len(numeric) + [True] * len(categorical)
        estimator = HistGradientBoostingClassifier(categorical_features=mask if categorical else None, random_state=seed, **params)
    elif kind == "random_forest":
        transformer = ColumnTransformer(
            [("numeric", "passthrough", numeric), ("categorical", _categorical_encoder(one_hot=False), categorical)],
        )
        estimator = RandomForestClassifier(random_state=seed, **params)
    elif kind == "logistic_regression":
        transformer = ColumnTransformer(
            [
                ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                ("categorical", _categorical_encoder(one_hot=True), categorical),
            ],
        )
        estimator = LogisticRegression(random_state=seed, **{"max_iter": 1000, **params})
    elif kind == "xgboost":
        try:
            from xgboost import XGBClassifier
        except ImportError as err:
            raise TypeError("the xgboost estimator needs the 'gpu' extra: pip install 'mlops-airflow[gpu]'") from err
        transformer = ColumnTransformer(
            [("numeric", "passthrough", numeric), ("categorical", _categorical_encoder(one_hot=False), categorical)],
        )
        device = resolve_xgboost_device(params.pop("device", None))
        estimator = XGBClassifier(random_state=seed, device=device, tree_method="hist", **params)
    else:
        raise ValueError(f"unknown estimator kind {kind!r}")
    return Pipeline([("features", transformer), ("estimator", estimator)])
