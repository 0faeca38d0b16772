"""Errors raised by mlops_airflow.

Decisions that a retry cannot change (bad data, a gate that says no, a bad spec) are
``AirflowFailException``; transient faults are ``MlopsError`` so Airflow's retries apply.

``ModelSpecError`` lives in :mod:`mlops_airflow.specs`: the training entrypoint loads specs
in pods that should not pay for importing Airflow.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class MlopsError(AirflowException):
    """A transient fault talking to an external system; safe to retry."""


class UnsafeModelVersionError(AirflowFailException):
    """A model version not in the one format we load (skops, the package's trusted types); refused before any of it runs."""


class UnservableVersionError(AirflowFailException):
    """A version without the promotion record that lets it serve (deploy, switch, batch scoring); refused."""


class TrackingServerUnavailableError(MlopsError):
    """The MLflow tracking server could not be reached."""


class TrainingFailedError(MlopsError):
    """The training entrypoint exited with an error that a retry may fix."""
