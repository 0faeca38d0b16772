"""Is the MLflow tracking server up? Airflow-free: the training entrypoint asks too."""

from __future__ import annotations

import urllib.error
import urllib.request


def tracking_server_problem(tracking_uri: str, timeout: float = 10.0) -> str | None:
    """Why an HTTP tracking server cannot serve requests, or ``None`` when it answers ``/health``.

    Asked before real work so that an outage fails in seconds with a clear message, instead
    of after MLflow's own HTTP retries. Non-HTTP stores (``sqlite:///``) are always ``None``.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the scheme is checked above
            if response.status >= 500:
                return f"MLflow at {tracking_uri} answered {response.status} on /health"
    except urllib.error.HTTPError as err:
        if err.code >= 500:
            return f"MLflow at {tracking_uri} answered {err.code} on /health"
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        return f"cannot reach MLflow at {tracking_uri}: {getattr(err, 'reason', err)}"
    return None
