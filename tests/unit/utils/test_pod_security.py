from __future__ import annotations

import copy

from mlops_airflow.utils.pod_security import restricted_violations

GOOD = {
    "spec": {
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
