"""What every training backend shares: the exit-code decision and the result's shape."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.constants import TrainingExitCode
from mlops_airflow.exceptions import MlopsError, TrackingServerUnavailableError, TrainingFailedError
from mlops_airflow.operators.training_base import raise_for_exit_code


class TestRaiseForExitCode:
    def test_ok(self):
        assert raise_for_exit_code(0, ["training finished"]) is None  # success: nothing raised

    @pytest.mark.parametrize(
        ("code", "error"),
        [
            pytest.param(TrainingExitCode.BAD_DATA, AirflowFailException, id="bad-data-no-retry"),
            pytest.param(TrainingExitCode.BAD_ARGUMENTS, AirflowFailException, id="bad-arguments-no-retry"),
            pytest.param(TrainingExitCode.TRACKING_UNREACHABLE, TrackingServerUnavailableError, id="tracking-retry"),
            pytest.param(TrainingExitCode.FAILED, TrainingFailedError, id="crash-retry"),
            pytest.param(-9, TrainingFailedError, id="killed-retry"),
        ],
    )
    def test_mapping(self, code, error):
        with pytest.raises(error) as info:
            raise_for_exit_code(code, ["line 1", "the reason"])
        assert "the reason" in str(info.value)
        assert isinstance(info.value, MlopsError) == (error is not AirflowFailException)
