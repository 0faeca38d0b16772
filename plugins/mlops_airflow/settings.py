"""The package's settings: the one reader of ``MLOPS_*`` configuration and of where the model specs live.

Every value is read when asked for, not at import, so a test or a stack that changes the
environment sees its change. Not here, on purpose: variables that pass between our own
processes (a training subprocess's parent, a pod's spec text, a serving process's identity)
belong to that protocol; ``${MLOPS_*}`` in a spec is the spec's own data
(:func:`mlops_airflow.specs.expand_env`); the credentials ``python -m mlops_airflow.mlflow_auth``
takes from its environment are that command's input; the demo harness reads its own
(:mod:`mlops_airflow.embedded.config`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

SPECS_DIR_ENV = "MLOPS_SPECS_DIR"
RETRY_DELAY_ENV = "MLOPS_RETRY_DELAY_SECONDS"
TRAINING_BACKEND_ENV = "MLOPS_TRAINING_BACKEND"
SERVING_BACKEND_ENV = "MLOPS_SERVING_BACKEND"
SERVING_STATE_DIR_ENV = "MLOPS_SERVING_STATE_DIR"
SERVING_PORT_ENV = {"live_port": "MLOPS_SERVING_LIVE_PORT", "blue_port": "MLOPS_SERVING_BLUE_PORT", "green_port": "MLOPS_SERVING_GREEN_PORT"}
CODE_VERSION_ENV = "MLOPS_CODE_VERSION"

DEFAULT_RETRY_DELAY = dt.timedelta(minutes=2)
MAX_RETRY_DELAY = dt.timedelta(days=1)
DEFAULT_SERVING_STATE_DIR = Path("/tmp/mlops-airflow/serving")  # noqa: S108 - a default the embedded stack overrides

_CHECKOUT_SPECS = Path(__file__).resolve().parents[2] / "include" / "models"


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def specs_dir() -> Path:
    """Where the model specs are.

    ``$MLOPS_SPECS_DIR`` if set; else ``include/models`` beside Airflow's dags folder (the
    Astro layout, also when the package is pip-installed into an image); else the checkout's.
    """
    explicit = os.environ.get(SPECS_DIR_ENV)
    if explicit:
        return Path(explicit)
    from airflow.sdk import conf

    beside_dags = Path(conf.get("core", "dags_folder", fallback="dags")).parent / "include" / "models"
    if beside_dags.is_dir():
        return beside_dags
    return _CHECKOUT_SPECS


def retry_delay() -> dt.timedelta:
    """``$MLOPS_RETRY_DELAY_SECONDS`` (a positive number of seconds; more than a day counts as a day) if set, else 2 minutes.

    Test stacks shorten it through the environment of the DAG processor, which parses the DAGs.
    """
    raw = os.environ.get(RETRY_DELAY_ENV, "").strip()
    if not raw:
        return DEFAULT_RETRY_DELAY
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r} is not a number of seconds") from None
    if not seconds > 0:  # also refuses nan
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r} must be a positive number of seconds")
    if seconds > MAX_RETRY_DELAY.total_seconds():  # inf too: every DAG would fail to parse over a value that only asks for long
        log.warning("%s=%r is more than a day; the first retry waits a day", RETRY_DELAY_ENV, raw)
        return MAX_RETRY_DELAY
    return dt.timedelta(seconds=seconds)


def training_backend_override() -> str | None:
    """``$MLOPS_TRAINING_BACKEND``: every spec's training backend, whatever the spec says (unset: the spec's)."""
    return os.environ.get(TRAINING_BACKEND_ENV) or None


def serving_backend_override() -> str | None:
    """``$MLOPS_SERVING_BACKEND``: every spec's serving backend, whatever the spec says (unset: the spec's)."""
    return os.environ.get(SERVING_BACKEND_ENV) or None


def serving_port(key: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The raw ``$MLOPS_SERVING_<LIVE|BLUE|GREEN>_PORT`` for ``key`` (``live_port``, ...), or None when unset."""
    return _environ(environ).get(SERVING_PORT_ENV[key])


def serving_state_dir() -> Path:
    """Where the local serving backend keeps its state, logs and sockets."""
    return Path(os.environ.get(SERVING_STATE_DIR_ENV) or DEFAULT_SERVING_STATE_DIR)


def code_version_override() -> str | None:
    """``$MLOPS_CODE_VERSION``, set by an image to the code it was built from."""
    return os.environ.get(CODE_VERSION_ENV) or None


MLFLOW_UI_URL_ENV = "MLOPS_MLFLOW_UI_URL"


def mlflow_ui_url(tracking_uri: str) -> str | None:
    """Where people open MLflow: ``MLOPS_MLFLOW_UI_URL`` when the servers reach it by another address, else an HTTP tracking URI; ``None`` for a file or database store."""
    explicit = os.environ.get(MLFLOW_UI_URL_ENV, "").strip()
    if explicit:
        return explicit.rstrip("/")
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    import urllib.parse

    parts = urllib.parse.urlsplit(tracking_uri.rstrip("/"))
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))  # never a password in a link


MODELS_PAGE_MLFLOW_CONN_ENV = "MLOPS_MODELS_PAGE_MLFLOW_CONN_ID"
MODELS_PAGE_MLFLOW_HTTP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}


def models_page_mlflow_conn_id() -> str | None:
    """The MLflow connection the Models page reads with, ``MLOPS_MODELS_PAGE_MLFLOW_CONN_ID`` (a read-only user's, ideally); ``None``: the pipeline's."""
    return os.environ.get(MODELS_PAGE_MLFLOW_CONN_ENV, "").strip() or None
