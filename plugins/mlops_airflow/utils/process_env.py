"""The environment of a process we start: an allow-list of the worker's, never all of it.

A worker's environment holds Airflow's secrets (the Fernet key, the JWT secret, the API
password, connection URIs in ``AIRFLOW_CONN_*``) and whatever else its host put there. A model
server or a training subprocess needs none of it: it gets the names below from the worker, minus
anything that looks like a secret, plus what its caller passes explicitly (the MLflow URI and
credentials, its own markers), and MLflow's pickle loaders are always switched off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mlops_airflow.model_loading import SAFE_MODEL_ENV

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
        "NVIDIA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
    }
)
# Locale categories, the interpreter's settings, MLflow's client settings, XDG directories (Caddy
# keeps its state there) and the package's own settings (a spec may read ``${MLOPS_*}``).
ALLOWED_PREFIXES = ("LC_", "PYTHON", "MLFLOW_", "XDG_", "MLOPS_")
# Never inherited, whatever the prefix: credentials travel only when the caller passes them.
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "USERNAME", "AUTH")


def inheritable(name: str) -> bool:
    """Whether a variable of the worker's environment may pass to a process we start."""
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
