"""The environment of a process we start: an allow-list of the worker's, never all of it.

A worker's environment holds Airflow's secrets (the Fernet key, the JWT secret, the API
password, connection URIs in ``AIRFLOW_CONN_*``) and whatever else its host put there. A model
server or a training subprocess needs none of it: it gets the names below from the worker, minus
anything that looks like a secret, plus what its caller passes explicitly (the MLflow URI and
credentials, its own markers), and MLflow's pickle loaders are always switched off. Object
storage credentials (``AWS_*``, ``GOOGLE_*``, ``GCS_*``, ``AZURE_*``) pass: data and artifacts
live there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mlops_airflow.core.model_loading import SAFE_MODEL_ENV

# The process basics: where programs and home are, locale, time zone, temporary files, proxies and
# CA bundles for HTTPS to MLflow, and which GPUs a trainer may see.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_HOME",
        "CUDA_PATH",
        "LD_LIBRARY_PATH",
        "OMP_NUM_THREADS",
    }
)
# Locale categories, the interpreter's settings, MLflow's client settings, XDG directories (Caddy
# keeps its state there) and the package's own settings (a spec may read ``${MLOPS_*}``).
ALLOWED_PREFIXES = ("LC_", "PYTHON", "MLFLOW_", "XDG_", "MLOPS_", "NVIDIA_")
# Object storage: the data, the reports and MLflow's artifacts may live on S3, GCS or Azure, and
# the worker's credentials for them (keys, tokens, web identity files) are what a trainer or a
# model server reading those needs. They are the storage's, not Airflow's, so they pass whole.
STORAGE_PREFIXES = ("AWS_", "GOOGLE_", "GCS_", "AZURE_")
# Never inherited, whatever the prefix: credentials travel only when the caller passes them.
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "USERNAME", "AUTH")


def inheritable(name: str) -> bool:
    """Whether a variable of the worker's environment may pass to a process we start."""
    if name.startswith(STORAGE_PREFIXES):
        return True
    if any(word in name.upper() for word in SECRET_WORDS):
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def child_env(explicit: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    The environment for a process we start: the inheritable part of ``environ`` (this process's by
    default), then ``explicit`` (it wins), then MLflow's pickle loaders switched off (that always wins).
    """
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items() if inheritable(name)}
    env.update(explicit or {})
    env.update(SAFE_MODEL_ENV)
    return env
