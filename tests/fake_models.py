"""Models that misbehave on purpose, for the promotion tests.

They are plain estimators (``predict_proba``) in an importable module (tests/ is on sys.path),
logged as training logs models: ``mlflow.sklearn`` in the skops format. The package loads a
skops file with its own trusted types only, so a test that registers one of these adds
:data:`TRUSTED_TYPES` to the package's list for its estimator kind (as a reviewed type would be).
"""

from __future__ import annotations

import numpy as np


class NanProbabilities:
    """Scores every tenth row NaN: its metrics would be NaN."""

    def predict_proba(self, model_input):
        proba = np.full((len(model_input), 2), 0.5)
        proba[::10] = np.nan
        return proba


class OneColumn:
    """Returns one probability column for two classes: the second class's metrics are missing."""

    def predict_proba(self, model_input):
        return np.full((len(model_input), 1), 0.5)


class SegmentSaboteur:
    """A good pipeline everywhere except one segment, where its probabilities are reversed."""

    def __init__(self, pipeline, column, value):
        self.pipeline = pipeline
        self.column = column
        self.value = value

    def predict_proba(self, model_input):
        proba = self.pipeline.predict_proba(model_input)
        flipped = (model_input[self.column] == self.value).to_numpy()
        proba[flipped] = proba[flipped][:, ::-1]
        return proba


TRUSTED_TYPES = tuple(f"{__name__}.{cls.__name__}" for cls in (NanProbabilities, OneColumn, SegmentSaboteur))
