"""The package's rule for errors: a decision that a retry cannot change fails at once, a fault is retried."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from mlops_airflow.exceptions import MlopsError, TrackingServerUnavailableError, TrainingFailedError, UnsafeModelVersionError, UnservableVersionError


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        pytest.param(MlopsError, True, id="MlopsError"),
        pytest.param(TrackingServerUnavailableError, True, id="TrackingServerUnavailableError"),
        pytest.param(TrainingFailedError, True, id="TrainingFailedError"),
        pytest.param(UnsafeModelVersionError, False, id="UnsafeModelVersionError"),
        pytest.param(UnservableVersionError, False, id="UnservableVersionError"),
    ],
)
def test_which_errors_airflow_retries(error, retried):
    """Airflow retries an ``AirflowException`` unless it is an ``AirflowFailException``."""
    raised = error("why")
    assert isinstance(raised, AirflowException)
    assert isinstance(raised, AirflowFailException) is not retried
    assert isinstance(raised, MlopsError) is retried
    assert str(raised) == "why"
