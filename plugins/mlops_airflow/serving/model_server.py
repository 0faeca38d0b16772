"""The model server of a colour: one registered version, loaded safely, behind MLflow's scoring API.

Where it sits in the loop: deploy idle colour starts it for each colour (a local process, a Docker
container, a Kubernetes pod). ``mlflow models serve`` would load the version with MLflow's own
loader, which reads pickle and takes the skops trusted types from the model itself; this server
downloads the version, checks and loads it with :mod:`mlops_airflow.core.model_loading` (skops, the
package's trusted types for the estimator kind), and serves it with MLflow's scoring app: the same
``/ping``, ``/health`` and ``/invocations``. Nothing here imports Airflow (the server image has none).

``python -m mlops_airflow.serving.model_server --model-uri models:/churn/3 --estimator-kind
hist_gradient_boosting --host 0.0.0.0 --port 8080``; the model URI and kind default to the
environment variables ``MODEL_URI`` and ``MODEL_ESTIMATOR_KIND`` (what a Deployment's patch sets).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

MODEL_URI_ENV = "MODEL_URI"
ESTIMATOR_KIND_ENV = "MODEL_ESTIMATOR_KIND"
EXIT_REFUSED = 3


def server_command(python: str, *, model_uri: str | None, estimator_kind: str | None, host: str, port: int) -> list[str]:
    """The server's argv; ``None`` leaves a value to its environment variable."""
    command = [python, "-m", "mlops_airflow.serving.model_server", "--host", host, "--port", str(port)]
    if model_uri is not None:
        command += ["--model-uri", model_uri]
    if estimator_kind is not None:
        command += ["--estimator-kind", estimator_kind]
    return command


def load(model_uri: str, estimator_kind: str, folder: str):
    """Download ``model_uri`` into ``folder`` and load it safely (raises ``UnsafeModelError``)."""
    import mlflow.artifacts

    from mlops_airflow.core.model_loading import load_model_dir, trusted_types

    path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
    return load_model_dir(path, what=model_uri, trusted=trusted_types(estimator_kind))


def main(argv: list[str] | None = None) -> int:
    from mlops_airflow.core.model_loading import SAFE_MODEL_ENV, UnsafeModelError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default=os.environ.get(MODEL_URI_ENV) or None)
    parser.add_argument("--estimator-kind", default=os.environ.get(ESTIMATOR_KIND_ENV) or None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if not args.model_uri or not args.estimator_kind:
        parser.error(f"--model-uri and --estimator-kind (or {MODEL_URI_ENV} and {ESTIMATOR_KIND_ENV}) are required")
    # Whatever started us: no MLflow loader in this process deserialises pickle.
    os.environ.update(SAFE_MODEL_ENV)
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder:
        try:
            model = load(args.model_uri, args.estimator_kind, folder)
        except UnsafeModelError as err:
            print(f"refusing to serve {err}", file=sys.stderr, flush=True)
            return EXIT_REFUSED
    import uvicorn
    from mlflow.pyfunc import scoring_server

    uvicorn.run(scoring_server.init(model), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
