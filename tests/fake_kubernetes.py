"""A small fake Kubernetes API server: Deployments, Services and HTTPRoutes, resourceVersion, scripted faults.

Standard library only. It keeps objects in memory, bumps ``resourceVersion`` on every
change and answers 409 when a patch names a stale one, simulates rollouts (a changed
Deployment becomes ready after a few reads, or never when told it is stuck), and
injects faults by request number: 500s, timeouts before or after the change is
applied, and a concurrent writer that makes the next patch conflict. It records every
request, so a test can hold them against a Role, and every switch of a Service to a
colour whose Deployment was not ready at that moment.
"""

from __future__ import annotations

import copy
import threading
import time
from urllib.parse import urlparse

from fake_http import FakeServer, JsonHandler

from mlops_airflow.serving.kubernetes import rollout_ready


def strategic_merge(target, patch):
    """Enough of Kubernetes' strategic merge: maps merge, lists of named maps merge by name, the rest replaces."""
    if isinstance(target, dict) and isinstance(patch, dict):
        out = dict(target)
        for key, value in patch.items():
            out[key] = strategic_merge(target.get(key), value) if key in target else copy.deepcopy(value)
        return out
    if isinstance(target, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in target + patch):
        merged = {x["name"]: x for x in target}
        for item in patch:
            merged[item["name"]] = strategic_merge(merged.get(item["name"], {}), item)
        return list(merged.values())
    return copy.deepcopy(patch)


class FakeCluster:
    """The in-memory cluster behind the handler."""

    def __init__(self, namespace: str = "mlops", rollout_reads: int = 2) -> None:
        self.namespace = namespace
        self.rollout_reads = rollout_reads
        self.objects: dict[tuple[str, str], dict] = {}
        self.requests: list[dict] = []
        self.faults: dict[int, str] = {}
        self.stuck: set[str] = set()  # Deployments whose rollout never completes
        self.unready_switches: list[str] = []
        self.fault_delay = 0.15
        self.lock = threading.RLock()
        self._version = 100

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def add(self, obj: dict) -> None:
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._next_version()
        if obj["kind"] == "Deployment":
            obj["metadata"]["generation"] = 1
            self._settle(obj)
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj

    def _settle(self, deployment: dict) -> None:
        """The rollout finished: status matches spec."""
        replicas = deployment["spec"].get("replicas", 1)
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "readyReplicas": replicas,
        }
        deployment.pop("_reads_left", None)

    def _advance(self, deployment: dict) -> None:
        """One read of a Deployment moves its rollout on."""
        if "_reads_left" not in deployment or deployment["metadata"]["name"] in self.stuck:
            return
        deployment["_reads_left"] -= 1
        if deployment["_reads_left"] <= 0:
            self._settle(deployment)

    def view(self, obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def get(self, kind: str, name: str) -> dict:
        return self.objects[(kind, name)]

    def patch(self, kind: str, name: str, body: dict) -> tuple[int, dict]:
        obj = self.objects.get((kind, name))
        if obj is None:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return 409, {"kind": "Status", "code": 409, "reason": "Conflict", "message": "the object has been modified"}
        body = copy.deepcopy(body)
        body.get("metadata", {}).pop("resourceVersion", None)
        before = copy.deepcopy(obj.get("spec"))
        if kind == "Service":
            color = ((body.get("spec") or {}).get("selector") or {}).get("color")
            if color and name == self.live_service and color != obj["spec"]["selector"].get("color"):
                target = self.objects[("Deployment", f"{self.model}-{color}")]
                ready, detail = rollout_ready(self.view(target))
                if not ready:
                    self.unready_switches.append(f"{color}: {detail}")
        merged = strategic_merge(obj, body)
        obj.clear()
        obj.update(merged)
        if obj.get("spec") != before:
            obj["metadata"]["resourceVersion"] = self._next_version()
            if kind == "Deployment":
                obj["metadata"]["generation"] += 1
                obj["status"] = {**obj.get("status", {}), "updatedReplicas": 0, "availableReplicas": 0}
                obj["_reads_left"] = self.rollout_reads
        return 200, self.view(obj)

    def concurrent_write(self) -> None:
        """Another writer touches the live Service: its resourceVersion moves on."""
        service = self.objects[("Service", self.live_service)]
        service["metadata"]["resourceVersion"] = self._next_version()

    @property
    def model(self) -> str:
        return next(o["metadata"]["labels"]["app"] for (kind, _), o in self.objects.items() if kind == "Service")

    @property
    def live_service(self) -> str:
        return self.model

    def selector_color(self) -> str | None:
        return self.objects[("Service", self.live_service)]["spec"]["selector"].get("color")


class _Handler(JsonHandler):
    cluster: FakeCluster

    def _route(self):
        parts = urlparse(self.path).path.strip("/").split("/")
        # /api/v1/namespaces/<ns>/services/<name>  or  /apis/apps/v1/namespaces/<ns>/deployments/<name>
        group = "" if parts[0] == "api" else parts[1]
        resource, name = parts[-2], parts[-1]
        kind = {"services": "Service", "deployments": "Deployment", "httproutes": "HTTPRoute"}.get(resource)
        return group, resource, name, kind

    def _handle(self, verb: str, body: dict | None = None) -> None:
        cluster = self.cluster
        group, resource, name, kind = self._route()
        with cluster.lock:
            index = len(cluster.requests)
            cluster.requests.append({"verb": verb, "group": group, "resource": resource, "name": name})
            fault = cluster.faults.get(index)
            if fault == "500":
                self.reply(500, {"kind": "Status", "code": 500, "reason": "InternalError"})
                return
            if fault == "conflict" and ("Service", cluster.live_service) in cluster.objects:
                cluster.concurrent_write()
            delay = cluster.fault_delay if fault == "timeout_before" else 0.0
        if delay:
            time.sleep(delay)
            return self.reply(504, {"kind": "Status", "code": 504})
        with cluster.lock:
            if kind is None or (kind, name) not in cluster.objects:
                status, answer = 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
            elif verb == "get":
                obj = cluster.get(kind, name)
                if kind == "Deployment":
                    cluster._advance(obj)
                status, answer = 200, cluster.view(obj)
            else:
                status, answer = cluster.patch(kind, name, body or {})
        if fault == "timeout_after":
            time.sleep(cluster.fault_delay)  # applied, but the client stops waiting first
        self.reply(status, answer)

    def do_GET(self):
        self._handle("get")

    def do_PATCH(self):
        self._handle("patch", self.body())

    def do_POST(self):
        self._handle("create")

    def do_PUT(self):
        self._handle("update")

    def do_DELETE(self):
        self._handle("delete")


class FakeKubernetesServer(FakeServer):
    """Run a :class:`FakeCluster` on a loopback port; ``url`` is its API server address."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        super().__init__(_Handler, cluster=cluster)
