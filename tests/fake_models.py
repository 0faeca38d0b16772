"""MLflow pyfunc models that misbehave on purpose, for the promotion tests.

They live in an importable module (tests/ is on sys.path) so that MLflow pickles them by
reference and loads them back in the same interpreter.
"""

from __future__ import annotations

from unittest import mock

import mlflow.pyfunc
import numpy as np

# MLflow asks for type hints on predict() when a PythonModel class is defined, through a helper
# that forces the warning to show; these doubles have none on purpose.
with mock.patch("mlflow.pyfunc.utils.data_validation.color_warning"):

    class NanProbabilities(mlflow.pyfunc.PythonModel):
        """Scores every tenth row NaN: its metrics would be NaN."""

        def predict(self, context, model_input, params=None):
            proba = np.full((len(model_input), 2), 0.5)
            proba[::10] = np.nan
            return proba

    class OneColumn(mlflow.pyfunc.PythonModel):
        """Returns one probability column for two classes: the second class's metrics are missing."""

        def predict(self, context, model_input, params=None):
            return np.full((len(model_input), 1), 0.5)

    class SegmentSaboteur(mlflow.pyfunc.PythonModel):
        """A good pipeline everywhere except one segment, where its probabilities are reversed."""

        def __init__(self, pipeline, column, value):
            self.pipeline = pipeline
            self.column = column
            self.value = value

        def predict(self, context, model_input, params=None):
            proba = self.pipeline.predict_proba(model_input)
            flipped = (model_input[self.column] == self.value).to_numpy()
            proba[flipped] = proba[flipped][:, ::-1]
            return proba
