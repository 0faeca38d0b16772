"""ModelTrainingPodOperator: the training entrypoint as a (GPU) pod, by KubernetesPodOperator.

Imported only by DAGs whose spec asks for the ``kubernetes`` backend: the provider module
brings the Kubernetes client with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.exceptions import MlopsError
from mlops_airflow.operators.training_base import ModelTrainingBase, raise_for_exit_code
from mlops_airflow.settings import specs_dir
from mlops_airflow.training.command_line import CONTAINER_RESULT_PATH, CONTAINER_SPEC_ENV
from mlops_airflow.utils.container_args import kubernetes_literal
from mlops_airflow.utils.pod_security import restricted_violations
from mlops_airflow.utils.templates import FailFastTemplates

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.specs import ModelSpec

SPEC_ENV = CONTAINER_SPEC_ENV
RESULT_PATH = CONTAINER_RESULT_PATH
RUN_AS_USER = 10001
POD_TEMPLATE_NAME = "pod_template.yaml"


class PodStartError(MlopsError):
    """The pod could not be scheduled or started; the message carries Kubernetes' reason."""


def _pod_template() -> str | None:
    """``include/training/pod_template.yaml`` beside the model specs, when the project has one."""

    template = specs_dir().parent / "training" / POD_TEMPLATE_NAME
    return str(template) if template.is_file() else None


def _start_failure_reason(pod) -> str:
    """Why a pod is stuck: the scheduler's condition and the containers' waiting reasons."""
    reasons = []
    status = pod.status
    for condition in (status.conditions or []) if status else []:
        if condition.type == "PodScheduled" and condition.status != "True":
            reasons.append(f"{condition.reason or 'Unschedulable'}: {condition.message or ''}".strip())
    for container in (status.container_statuses or []) if status else []:
        waiting = container.state.waiting if container.state else None
        if waiting and waiting.reason:
            reasons.append(f"{container.name}: {waiting.reason}: {waiting.message or ''}".strip())
    return "; ".join(reasons) or "no reason reported by Kubernetes"


class ModelTrainingPodOperator(ModelTrainingBase, FailFastTemplates, KubernetesPodOperator):
    """
    Train a model version in a Kubernetes pod running ``python -m mlops_airflow.training``.

    The pod gets the spec's GPUs, CPU / memory, node selector, tolerations and runtime class,
    runs as a non-root user under the "restricted" Pod Security Standard with a read-only
    root filesystem (``/tmp`` is an ``emptyDir``), and reads MLflow credentials from a
    Kubernetes Secret. Its result, ``/airflow/xcom/return.json``, is the task's XCom, as for
    every training backend. A retry reattaches to the pod of its DAG run instead of starting a
    second one; a pod that cannot be scheduled or started fails with Kubernetes' reason and is
    deleted, so it never trains unobserved later. The pod never mounts a service-account token,
    with or without the pod template.

    The reason, window and report URI come from Params and XCom: Kubernetes would expand a
    ``$(VAR)`` in them from the container's environment (the MLflow password included), so the
    command, args and the env values the operator sets are escaped (``$`` as ``$$``) once
    rendered, and the entrypoint receives exactly the text that was given.

    The training arguments are :class:`~mlops_airflow.operators.training_base.ModelTrainingBase`'s
    (the window, report and reason are templated as part of ``arguments``), and:

    :param gpus: ``nvidia.com/gpu`` limit.
    :param cpu: CPU request.
    :param memory: memory request and limit.
    :param mlflow_credentials_secret: Kubernetes Secret with keys ``username`` and ``password``.
    """

    # The window, report and reason are rendered as part of ``arguments``.
    template_fields: Sequence[str] = KubernetesPodOperator.template_fields

    def __init__(
        self,
        *,
        gpus: int = 0,
        cpu: str = "1",
        memory: str = "2Gi",
        mlflow_credentials_secret: str | None = None,
        **kwargs: Any,
    ) -> None:
        from kubernetes.client import models as k8s

        limits = {"memory": memory, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
        secrets = []
        if mlflow_credentials_secret:
            secrets = [
                Secret("env", "MLFLOW_TRACKING_USERNAME", mlflow_credentials_secret, "username"),
                Secret("env", "MLFLOW_TRACKING_PASSWORD", mlflow_credentials_secret, "password"),
            ]
        restricted = k8s.V1SecurityContext(allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"]), read_only_root_filesystem=True)
        hardening = {
            "security_context": k8s.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=RUN_AS_USER,
                run_as_group=RUN_AS_USER,
                fs_group=RUN_AS_USER,
                seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
            ),
            "container_security_context": restricted,
            "xcom_sidecar_container_security_context": restricted,
            "volumes": [k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())],
            "volume_mounts": [k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],  # noqa: S108 - the pod's own emptyDir
            # Training needs no Kubernetes API: no token, even when the pod template is missing.
            "automount_service_account_token": False,
            "pod_template_file": _pod_template(),
            "do_xcom_push": True,
            "get_logs": True,
            "log_events_on_failure": True,
            "on_finish_action": "delete_succeeded_pod",
        }
        super().__init__(
            cmds=["python"],
            container_resources=k8s.V1ResourceRequirements(requests={"cpu": cpu, "memory": memory}, limits=limits),
            secrets=secrets,
            # Overrides are allowed, but build_pod_request_obj() refuses a pod they weaken.
            **{**hardening, **kwargs},
        )
        self.gpus = gpus

    def backend_arguments(self, *, window_start: str, window_end: str, data_report_uri: str | None, reason: str) -> dict[str, Any]:
        return {"arguments": self.container_arguments(window_start=window_start, window_end=window_end, data_report_uri=data_report_uri, reason=reason)}

    def execute(self, context: Context) -> Any:
        from kubernetes.client import models as k8s

        from mlops_airflow.core.model_loading import PICKLE_ENV
        from mlops_airflow.hooks.mlflow import MlflowHook

        # Worker-side, never at parse time: the spec text and the tracking URI (not secret;
        # the credentials come from the Secret).
        spec_text = Path(self.spec_path).read_text(encoding="utf-8")
        tracking_uri = MlflowHook(mlflow_conn_id=self.mlflow_conn_id).get_tracking_uri()
        # Kubernetes expands $(VAR) in env values too: these are literals.
        self.env_vars = [
            *[e for e in (self.env_vars or []) if e.name not in (SPEC_ENV, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "HOME", PICKLE_ENV)],
            k8s.V1EnvVar(name=SPEC_ENV, value=kubernetes_literal(spec_text)),
            k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value=kubernetes_literal(tracking_uri)),
            k8s.V1EnvVar(name="MLFLOW_REGISTRY_URI", value=kubernetes_literal(tracking_uri)),
            k8s.V1EnvVar(name="HOME", value="/tmp"),  # noqa: S108 - the read-only root needs a writable home
            k8s.V1EnvVar(name=PICKLE_ENV, value="false"),  # no MLflow loader in the pod deserialises pickle
        ]
        result = super().execute(context)
        # A deferred pod returns through the trigger (execute_complete), which KubernetesPodOperator reads itself.
        return self.training_result(result) if result is not None else result

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False):
        """The KubernetesPodOperator pod, refused if it breaks the restricted Pod Security Standard.

        The training container's command and args are rendered text, some of it from Params and
        XCom: escaped here, once per pod built, so that Kubernetes expands none of it.
        """
        from kubernetes.client import ApiClient

        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        for container in pod.spec.containers:
            if container.name == self.base_container_name:
                container.command = [kubernetes_literal(str(part)) for part in container.command or []] or None
                container.args = [kubernetes_literal(str(part)) for part in container.args or []] or None
        problems = restricted_violations(ApiClient().sanitize_for_serialization(pod))
        if problems:
            raise AirflowFailException("the training pod breaks the restricted Pod Security Standard:\n  - " + "\n  - ".join(problems))
        return pod

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None) -> None:
        """KubernetesPodOperator's clean-up, with the entrypoint's exit code turned into the right decision.

        Without this, bad data (exit 3) would fail as a generic pod failure and be retried.
        """
        from airflow.providers.cncf.kubernetes.utils.container import get_container_status
        from airflow.sdk.exceptions import AirflowException

        try:
            super().cleanup(pod, remote_pod, xcom_result=xcom_result, context=context)
        except AirflowException as err:
            status = get_container_status(remote_pod, self.base_container_name) if remote_pod else None
            terminated = status.state.terminated if status and status.state else None
            if terminated is None or not terminated.exit_code:
                raise
            try:
                raise_for_exit_code(terminated.exit_code, [terminated.message or terminated.reason or ""])
            except AirflowException as decision:
                raise decision from err

    def await_pod_start(self, pod) -> None:
        """Wait for the pod as KubernetesPodOperator does; on failure say why, and delete the pod."""
        from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchFailedException, PodLaunchTimeoutException

        try:
            super().await_pod_start(pod)
        except (PodLaunchFailedException, PodLaunchTimeoutException) as err:
            try:
                remote = self.pod_manager.read_pod(pod)
                reason = _start_failure_reason(remote)
            except Exception as read_error:  # the reason is a courtesy; the failure stands
                reason = f"(could not read the pod: {read_error})"
            self.log.error("Training pod %s did not start: %s", pod.metadata.name, reason)
            self.pod_manager.delete_pod(pod)
            # Deleted already: nothing left for the provider's clean-up to judge or report.
            self.remote_pod = None
            raise PodStartError(f"training pod {pod.metadata.name} did not start: {reason} ({err})") from err


def training_pod_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """The operator's arguments that come from the spec's ``training.compute``."""
    from kubernetes.client import models as k8s

    compute = spec.training.compute
    return {
        "image": compute.image,
        "gpus": compute.gpus,
        "cpu": compute.cpu,
        "memory": compute.memory,
        "namespace": compute.namespace,
        "service_account_name": compute.service_account,
        "node_selector": dict(compute.node_selector) or None,
        "tolerations": [k8s.V1Toleration(**{_snake(k): v for k, v in t.items()}) for t in compute.tolerations] or None,
        "runtime_class_name": compute.runtime_class,
        "mlflow_credentials_secret": compute.mlflow_credentials_secret,
        "schedule_timeout_seconds": compute.schedule_timeout_seconds,
        "startup_timeout_seconds": 900,  # CUDA images are large; pulling one takes a while
        "labels": {"app.kubernetes.io/name": "mlops-training", "app.kubernetes.io/part-of": "mlops-airflow", "mlops-airflow/model": spec.name},
        "name": f"train-{spec.name}",
        "execution_timeout": dt.timedelta(minutes=spec.training.timeout_minutes),
    }


def _snake(name: str) -> str:
    """Kubernetes' camelCase field names as the Python client's keyword names."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
