"""The feature frame as the model sees it, in training and in scoring alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_airflow.specs import ModelSpec

if TYPE_CHECKING:
    import pandas as pd


class FeatureError(ValueError):
    """The data cannot be turned into the model's features; the message says why."""


def prepare_features(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Select the spec's features: numeric as float64 (so missing values fit), categoricals as objects."""
    import numpy as np

    missing = [c for c in spec.features.columns if c not in frame.columns]
    if missing:
        raise FeatureError(f"feature columns {missing} are missing (present: {sorted(map(str, frame.columns))})")
    features = frame[list(spec.features.columns)].copy()
    for column in spec.features.numeric:
        try:
            features[column] = features[column].astype("float64")
        except (TypeError, ValueError) as err:
            raise FeatureError(f"numeric feature {column!r} is not numeric: {err}") from err
    non_finite = [c for c in spec.features.numeric if np.isinf(features[c]).any()]
    if non_finite:
        raise FeatureError(f"numeric features {non_finite} contain +-inf")
    for column in spec.features.categorical:
        features[column] = features[column].astype(object).where(features[column].notna(), None)
    return features
