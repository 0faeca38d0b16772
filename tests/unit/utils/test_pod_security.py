from __future__ import annotations

import copy

import pytest

from mlops_airflow.utils.pod_security import restricted_violations

GOOD = {
    "spec": {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "containers": [
            {
                "name": "base",
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True},
            }
        ],
    }
}


def test_good_pod():
    assert restricted_violations(GOOD) == []


def test_each_breach_is_named():
    pod = copy.deepcopy(GOOD)
    pod["spec"]["hostNetwork"] = True
    pod["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    container = pod["spec"]["containers"][0]
    container["securityContext"].update(privileged=True, runAsUser=0)
    container["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    container["ports"] = [{"containerPort": 80, "hostPort": 80}]
    problems = "\n".join(restricted_violations(pod))
    for expected in ("hostNetwork", "hostPath", "privileged", "runAsUser must not be 0", "SYS_ADMIN", "hostPort"):
        assert expected in problems


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="unset-kubernetes-mounts-the-token"),
        pytest.param(True, id="true"),
    ],
)
def test_a_pod_that_may_mount_an_api_token_is_reported(value):
    pod = copy.deepcopy(GOOD)
    if value is None:
        del pod["spec"]["automountServiceAccountToken"]
    else:
        pod["spec"]["automountServiceAccountToken"] = value
    assert restricted_violations(pod) == ["spec.automountServiceAccountToken must be false (the pod needs no Kubernetes API token)"]
