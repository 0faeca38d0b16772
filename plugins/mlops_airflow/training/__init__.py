"""The training entrypoint, ``python -m mlops_airflow.training``.

The same code runs as a local subprocess, in a Docker container and in a Kubernetes pod;
it reports back through a JSON result file (``/airflow/xcom/return.json`` in a pod).
It imports no Airflow, so a trainer image needs only the package's runtime libraries.
"""
