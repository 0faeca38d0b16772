"""The serving backend a model spec asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_airflow.serving.inference_log import InferenceLogSettings
from mlops_airflow.serving.model_server import Capacity

if TYPE_CHECKING:
    from pathlib import Path

    from mlops_airflow.serving.base import ServingBackend
    from mlops_airflow.serving.local import LocalServingBackend
    from mlops_airflow.specs import ModelSpec


def serving_backend(spec: ModelSpec, *, mlflow_env: dict[str, str]) -> ServingBackend:
    """``local`` (the embedded default), ``kubernetes`` or ``docker``; ``mlflow_env`` lets local and Docker model servers reach the registry."""
    if spec.serving.backend == "kubernetes":
        from mlops_airflow.serving.kubernetes import KubernetesServingBackend

        return KubernetesServingBackend.from_hook(
            kubernetes_conn_id=spec.serving.kubernetes_conn_id,
            model=spec.name,
            namespace=spec.serving.namespace,
            replicas=spec.serving.replicas,
            port=spec.serving.port,
            capacity=Capacity.from_spec(spec.serving.capacity),
            inference_log=inference_log_settings(spec, shared_storage_only=True),
            gateway=spec.serving.gateway is not None,
        )
    if spec.serving.backend == "docker":
        from mlops_airflow.serving.docker import DockerServingBackend

        return DockerServingBackend.from_hook(
            model=spec.name,
            spec=spec.serving.docker,
            env=mlflow_env,
            capacity=Capacity.from_spec(spec.serving.capacity),
            inference_log=inference_log_settings(spec, shared_storage_only=True),
        )
    return local_serving_backend(spec, env=mlflow_env)


def inference_log_settings(spec: ModelSpec, *, shared_storage_only: bool = False) -> InferenceLogSettings | None:
    """The spec's ``serving.inference_log``; ``None`` when off.

    ``shared_storage_only``: ``None`` for a ``file://`` URI too, because a container's or pod's own
    disk is not where the pipeline reads (Docker and Kubernetes log to object storage).
    """
    log = spec.serving.inference_log
    if log.uri is None or (shared_storage_only and log.uri.startswith("file://")):
        return None
    return InferenceLogSettings(uri=log.uri, sample_rate=log.sample_rate, flush_seconds=log.flush_seconds)


def local_serving_backend(spec: ModelSpec, *, state_dir: Path | None = None, env: dict[str, str] | None = None) -> LocalServingBackend:
    """The local backend of ``spec``: its own live, blue and green ports (``serving.local``)."""
    from mlops_airflow.serving.local import LocalServingBackend
    from mlops_airflow.serving.local_ports import LocalPorts

    local = spec.serving.local
    return LocalServingBackend(
        model=spec.name,
        state_dir=state_dir,
        ports=LocalPorts(live=local.live_port, blue=local.blue_port, green=local.green_port),
        env=env,
        capacity=Capacity.from_spec(spec.serving.capacity),
        inference_log=inference_log_settings(spec),
    )
