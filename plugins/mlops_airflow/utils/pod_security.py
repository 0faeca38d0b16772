"""The Kubernetes Pod Security Standard "restricted", plus a read-only root filesystem and no API token, as a check.

Pure: takes a pod as the API's JSON dictionary (``ApiClient().sanitize_for_serialization``)
and lists what breaks the rules, each with its field path. The training pod operator runs
it on every pod it is about to start, so a pod template cannot weaken a pod unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted
ALLOWED_VOLUME_SOURCES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"})
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    found = []
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(spec.get(kind) or []):
            found.append((f"spec.{kind}[{index}]", container))
    return found


def restricted_violations(pod: Mapping[str, Any], *, writable_paths: tuple[str, ...] = ("/tmp",)) -> list[str]:  # noqa: S108 - a mount path, not a temp file
    """Every breach of the restricted profile and of our own rules; empty when the pod is fine.

    Our rules beyond the profile: a read-only root filesystem, and
    ``automountServiceAccountToken: false`` on the pod (none of our pods calls the Kubernetes
    API; left unset, Kubernetes mounts the service account's token).

    :param writable_paths: paths the main container must have mounted from a volume, since its
        root filesystem is read-only.
    """
    spec = pod.get("spec") or {}
    pod_context = spec.get("securityContext") or {}
    problems: list[str] = []

    if spec.get("automountServiceAccountToken") is not False:
        problems.append("spec.automountServiceAccountToken must be false (the pod needs no Kubernetes API token)")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"spec.{flag} must not be true")
    for index, volume in enumerate(spec.get("volumes") or []):
        sources = set(volume) - {"name"}
        if not sources <= ALLOWED_VOLUME_SOURCES:
            problems.append(f"spec.volumes[{index}] uses {sorted(sources - ALLOWED_VOLUME_SOURCES)}, not an allowed volume type")
    if pod_context.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser must not be 0")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP_TYPES:
        problems.append(f"spec.securityContext.seccompProfile.type {pod_seccomp!r} is not allowed")

    for path, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{path}.securityContext.privileged must not be true")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{path}.securityContext.allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{path}.securityContext.capabilities.drop must include ALL")
        added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
        if added:
            problems.append(f"{path}.securityContext.capabilities.add has {sorted(added)}")
        run_as_non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if run_as_non_root is not True:
            problems.append(f"{path}: runAsNonRoot must be true (container or pod securityContext)")
        if context.get("runAsUser") == 0:
            problems.append(f"{path}.securityContext.runAsUser must not be 0")
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ALLOWED_SECCOMP_TYPES:
            problems.append(f"{path}: seccompProfile.type must be RuntimeDefault or Localhost (container or pod securityContext)")
        for port_index, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                problems.append(f"{path}.ports[{port_index}].hostPort must not be set")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{path}.securityContext.readOnlyRootFilesystem must be true")

    containers = spec.get("containers") or []
    if containers:
        mounted = {m.get("mountPath") for m in containers[0].get("volumeMounts") or []}
        for writable in writable_paths:
            if writable not in mounted:
                problems.append(f"spec.containers[0] has a read-only root but no volume mounted at {writable}")
    return problems
