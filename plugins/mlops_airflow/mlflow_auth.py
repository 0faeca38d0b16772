"""``python -m mlops_airflow.mlflow_auth setup``: create the pipeline's MLflow identity, as MLflow's admin.

The compose stack's init step and a Helm post-install job run it; it is idempotent. The
work is :func:`mlops_airflow.hooks.mlflow_auth.ensure_pipeline_identity`; this module is the
command line, kept at this path because deployments name it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mlops_airflow.hooks.mlflow_auth import ensure_pipeline_identity, refuse_default_admin_password
from mlops_airflow.specs import model_specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the pipeline's MLflow identity (run as MLflow's admin; idempotent).")
    parser.add_argument("command", choices=["setup"])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--models", nargs="*", help="registered model names (default: every spec's)")
    args = parser.parse_args(argv)
    # Secrets come from the environment only, never argv (process lists show argv).
    env = {
        key: os.environ.get(key, "")
        for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLOPS_MLFLOW_PIPELINE_USER", "MLOPS_MLFLOW_PIPELINE_PASSWORD")
    }
    missing = [key for key in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLOPS_MLFLOW_PIPELINE_PASSWORD") if not env[key]]
    if missing or not args.tracking_uri:
        parser.error(f"set {', '.join(missing) or 'MLFLOW_TRACKING_URI'} in the environment")
    models = [spec.registered_model_name for spec in model_specs()] if args.models is None else args.models
    refuse_default_admin_password(args.tracking_uri, admin_username=env["MLFLOW_AUTH_ADMIN_USERNAME"] or "admin")
    done = ensure_pipeline_identity(
        args.tracking_uri,
        admin_username=env["MLFLOW_AUTH_ADMIN_USERNAME"] or "admin",
        admin_password=env["MLFLOW_AUTH_ADMIN_PASSWORD"],
        username=env["MLOPS_MLFLOW_PIPELINE_USER"] or "mlops-pipeline",
        password=env["MLOPS_MLFLOW_PIPELINE_PASSWORD"],
        models=models,
    )
    print(json.dumps({"changes": done}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
