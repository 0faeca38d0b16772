"""ModelTrainingPodOperator: the pods it would start (no cluster), and a fake Kubernetes API server."""

from __future__ import annotations

import copy
import datetime
import json
import time
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import pytest
import yaml
from fake_http import FakeServer, JsonHandler
from helpers import CHURN_SPEC
from kubernetes.client import ApiClient
from kubernetes_expansion import container_process, expand

from mlops_airflow.constants import TAG_REASON
from mlops_airflow.specs import load_spec_text
from mlops_airflow.utils.pod_security import restricted_violations

SPEC_PATH = CHURN_SPEC
K8S_VERSION = "1.33"


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    def write(server: str) -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": server}}],
            "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "mlops"}}],
            "current-context": "fake",
        }
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        monkeypatch.setenv("KUBECONFIG", str(path))
        return str(path)

    return write


@pytest.fixture
def gpu_spec(monkeypatch):
    monkeypatch.setenv("MLOPS_TRAINING_BACKEND", "kubernetes")
    return load_spec_text(SPEC_PATH.read_text(), source=str(SPEC_PATH))


def make_operator(spec, **overrides):
    from mlops_airflow.operators.training_pod import ModelTrainingPodOperator, training_pod_kwargs

    kwargs = {
        **training_pod_kwargs(spec),
        "task_id": "train_model",
        "spec_path": str(SPEC_PATH),
        "window_start": "2026-01-01",
        "window_end": "2026-01-29",
        **overrides,
    }
    return ModelTrainingPodOperator(**kwargs)


def pod_dict(operator) -> dict:
    return ApiClient().sanitize_for_serialization(operator.build_pod_request_obj())


class TestPodSpec:
    def test_pod_carries_the_spec_compute(self, gpu_spec, kubeconfig):
        config = kubeconfig("https://127.0.0.1:1")
        pod = pod_dict(make_operator(gpu_spec, config_file=config))
        base, sidecar = pod["spec"]["containers"]
        assert base["name"] == "base"
        assert base["image"] == gpu_spec.training.compute.image
        assert base["command"] == ["python"]
        assert base["args"][:2] == ["-m", "mlops_airflow.training"]
        assert base["args"][base["args"].index("--spec") + 1] == "env:MLOPS_MODEL_SPEC"
        assert base["args"][base["args"].index("--result-path") + 1] == "/airflow/xcom/return.json"
        assert base["resources"] == {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"}}
        assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert pod["spec"]["serviceAccountName"] == "mlops-training"
        assert pod["metadata"]["namespace"] == "mlops"
        assert pod["spec"]["automountServiceAccountToken"] is False  # from the pod template file
        assert sidecar["name"] == "airflow-xcom-sidecar"

    def test_credentials_come_from_a_secret_never_a_literal(self, gpu_spec, kubeconfig):
        config = kubeconfig("https://127.0.0.1:1")
        env = {e["name"]: e for e in pod_dict(make_operator(gpu_spec, config_file=config))["spec"]["containers"][0]["env"]}
        for name, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-pipeline-credentials", "key": key}

    def test_runtime_class(self, gpu_spec, kubeconfig):
        config = kubeconfig("https://127.0.0.1:1")
        pod = pod_dict(make_operator(gpu_spec, config_file=config, runtime_class_name="nvidia"))
        assert pod["spec"]["runtimeClassName"] == "nvidia"

    def test_validates_against_the_kubernetes_schema(self, gpu_spec, kubeconfig):
        config = kubeconfig("https://127.0.0.1:1")
        pod = {"apiVersion": "v1", "kind": "Pod", **pod_dict(make_operator(gpu_spec, config_file=config))}
        assert kubernetes_validate.validate(pod, K8S_VERSION, strict=True) == K8S_VERSION  # raises on any violation
        # The check is not vacuous: one field the schema does not know fails it.
        misspelt = copy.deepcopy(pod)
        misspelt["spec"]["containers"][0]["securityContxt"] = misspelt["spec"]["containers"][0].pop("securityContext")
        with pytest.raises(kubernetes_validate.ValidationError, match="securityContxt"):
            kubernetes_validate.validate(misspelt, K8S_VERSION, strict=True)

    def test_meets_the_restricted_pod_security_standard(self, gpu_spec, kubeconfig):
        config = kubeconfig("https://127.0.0.1:1")
        assert restricted_violations(pod_dict(make_operator(gpu_spec, config_file=config))) == []

    @pytest.mark.parametrize(
        "path",
        [
            pytest.param(("spec", "securityContext", "runAsNonRoot"), id="pod-runAsNonRoot"),
            pytest.param(("spec", "securityContext", "seccompProfile"), id="pod-seccompProfile"),
            pytest.param(("spec", "containers", 0, "securityContext", "allowPrivilegeEscalation"), id="base-allowPrivilegeEscalation"),
            pytest.param(("spec", "containers", 0, "securityContext", "capabilities"), id="base-capabilities-drop"),
            pytest.param(("spec", "containers", 0, "securityContext", "readOnlyRootFilesystem"), id="base-readOnlyRootFilesystem"),
            pytest.param(("spec", "containers", 0, "volumeMounts"), id="base-tmp-emptyDir"),
            pytest.param(("spec", "automountServiceAccountToken"), id="no-api-token"),
            pytest.param(("spec", "containers", 1, "securityContext", "allowPrivilegeEscalation"), id="sidecar-allowPrivilegeEscalation"),
            pytest.param(("spec", "containers", 1, "securityContext", "capabilities"), id="sidecar-capabilities-drop"),
            pytest.param(("spec", "containers", 1, "securityContext", "readOnlyRootFilesystem"), id="sidecar-readOnlyRootFilesystem"),
        ],
    )
    def test_dropping_any_hardening_field_fails_the_check(self, gpu_spec, kubeconfig, path):
        config = kubeconfig("https://127.0.0.1:1")
        pod = copy.deepcopy(pod_dict(make_operator(gpu_spec, config_file=config)))
        node = pod
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        assert restricted_violations(pod), f"removing {'.'.join(map(str, path))} went unnoticed"

    def test_a_weakened_pod_is_refused(self, gpu_spec, kubeconfig, tmp_path):
        from airflow.sdk.exceptions import AirflowFailException
        from kubernetes.client import models as k8s

        config = kubeconfig("https://127.0.0.1:1")
        operator = make_operator(gpu_spec, config_file=config, container_security_context=k8s.V1SecurityContext(privileged=True))
        with pytest.raises(AirflowFailException, match="restricted Pod Security Standard"):
            operator.build_pod_request_obj()

    def test_no_api_token_even_without_the_pod_template(self, gpu_spec, kubeconfig):
        config = kubeconfig("https://127.0.0.1:1")
        pod = pod_dict(make_operator(gpu_spec, config_file=config, pod_template_file=None))
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert restricted_violations(pod) == []


# The container's Secret-backed variables, as the kubelet would fill them in.
SECRETS = {"MLFLOW_TRACKING_USERNAME": "pipeline", "MLFLOW_TRACKING_PASSWORD": "s3cret-password"}
# Reasons (and report URIs) a Param or a forged XCom could carry.
HOSTILE_TEXTS = [
    pytest.param("$(MLFLOW_TRACKING_PASSWORD)", id="secret-reference"),
    pytest.param("$$(MLFLOW_TRACKING_PASSWORD) $$$(MLFLOW_TRACKING_PASSWORD)", id="escaped-reference"),
    pytest.param("${MLFLOW_TRACKING_PASSWORD} $MLFLOW_TRACKING_USERNAME", id="shell-variables"),
    pytest.param("`cat /var/run/secrets/kubernetes.io/serviceaccount/token`", id="backticks"),
    pytest.param("$(echo hi); rm -rf / #'\"", id="command-substitution"),
    pytest.param("line one\nline two\r\n$(MLFLOW_TRACKING_USERNAME)\ttab", id="newlines"),
    pytest.param("ends with $", id="trailing-dollar"),
    pytest.param("$\u00e9 \u00fcn\u00efc\u00f6d\u00e9 \u20ac$(", id="unicode-after-dollar"),
    pytest.param("--window-start=1999-01-01", id="option-like"),
    pytest.param(("x" * 4999 + "$(MLFLOW_TRACKING_PASSWORD)") * 2, id="10k-characters"),
]


class TestKubernetesExpansion:
    """The test helper follows the kubelet's rules (cases from Kubernetes' own expand_test.go)."""

    @pytest.mark.parametrize(
        ("text", "expanded"),
        [
            pytest.param("$(A)", "a", id="defined"),
            pytest.param("___$(B)___", "___b___", id="inside-text"),
            pytest.param("$(A)$(B)", "ab", id="adjacent"),
            pytest.param("$(UNDEFINED)", "$(UNDEFINED)", id="undefined-stays"),
            pytest.param("$$(A)", "$(A)", id="escaped"),
            pytest.param("$$$(A)", "$a", id="escaped-then-defined"),
            pytest.param("$$$$(A)", "$$(A)", id="two-escapes"),
            pytest.param("$(A", "$(A", id="unclosed"),
            pytest.param("$A ${A}", "$A ${A}", id="shell-syntax-stays"),
            pytest.param("$()", "$()", id="empty-name"),
            pytest.param("$(foo$$var)", "$(foo$$var)", id="operator-inside-name"),
            pytest.param("x$", "x$", id="trailing-operator"),
            pytest.param("$$", "$", id="lone-escape"),
        ],
    )
    def test_expand(self, text, expanded):
        assert expand(text, {"A": "a", "B": "b"}) == expanded

    def test_env_values_see_only_earlier_variables(self):
        container = {
            "env": [
                {"name": "FIRST", "value": "$(LATER)"},
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "LATER", "value": "$(SECRET)"},
            ],
            "command": ["echo"],
            "args": ["$(FIRST)", "$(LATER)"],
        }
        process = container_process(container, {"SECRET": "hidden"})
        assert process["env"] == {"FIRST": "$(LATER)", "SECRET": "hidden", "LATER": "hidden"}
        assert process["argv"] == ["echo", "$(LATER)", "hidden"]


class TestUserTextInThePod:
    """No Param or XCom text reaches the pod's args or env in a form Kubernetes would expand."""

    @pytest.mark.parametrize("text", HOSTILE_TEXTS)
    def test_the_entrypoint_receives_exactly_the_text_given(self, gpu_spec, kubeconfig, text):
        from mlops_airflow.training.__main__ import parse_args

        config = kubeconfig("https://127.0.0.1:1")
        report_uri = f"s3://bucket/churn/_reports/{text}"
        operator = make_operator(gpu_spec, config_file=config, reason=text, data_report_uri=report_uri)
        base = pod_dict(operator)["spec"]["containers"][0]
        process = container_process(base, SECRETS)
        assert process["argv"][:3] == ["python", "-m", "mlops_airflow.training"]
        args = parse_args(process["argv"][3:])
        assert dict(args.tag)[TAG_REASON] == text
        assert args.data_report == report_uri
        assert not any(SECRETS["MLFLOW_TRACKING_PASSWORD"] in part for part in process["argv"])
        # Escaped once per pod built, never twice.
        assert pod_dict(operator)["spec"]["containers"][0]["args"] == base["args"]

    def test_env_values_the_operator_sets_are_literal(self, gpu_spec, fake_cluster, monkeypatch, tmp_path):
        from airflow.sdk.exceptions import TaskDeferred

        from mlops_airflow.training.__main__ import parse_args

        spec_text = SPEC_PATH.read_text() + "# $(MLFLOW_TRACKING_PASSWORD) and $$ stay as written\n"
        spec_file = tmp_path / "churn.yaml"
        spec_file.write_text(spec_text)
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000}))
        operator = make_operator(gpu_spec, spec_path=str(spec_file), config_file=fake_cluster["config"], deferrable=True, reason="$(MLFLOW_TRACKING_PASSWORD)")
        with pytest.raises(TaskDeferred):
            operator.execute(task_context(operator, 1))
        (pod,) = fake_cluster["pods"].values()
        process = container_process(pod["spec"]["containers"][0], SECRETS)
        assert process["env"]["MLOPS_MODEL_SPEC"] == spec_text
        assert process["env"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert process["env"]["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"  # no MLflow loader in the pod reads pickle
        assert dict(parse_args(process["argv"][3:]).tag)[TAG_REASON] == "$(MLFLOW_TRACKING_PASSWORD)"


class FakeKubernetes(JsonHandler):
    """The handful of core/v1 calls KubernetesPodOperator makes, with pods kept in memory.

    ``state`` (given by the server) holds the pods and counts the POSTs; ``behaviour`` is
    ``unschedulable`` (pods never leave Pending) or ``succeed`` (pods finish after a few reads).
    """

    state: dict

    def _pods(self):
        return self.state.setdefault("pods", {})

    def _status(self, pod):
        pod["_reads"] = pod.get("_reads", 0) + 1
        if self.state["behaviour"] == "unschedulable":
            return {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                    }
                ],
            }
        if self.state["behaviour"] == "bad_data":
            terminated = {"exitCode": 3, "reason": "Error", "message": "error: no partitions under s3://bucket/churn"}
            return {
                "phase": "Failed",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "base", "ready": False, "restartCount": 0, "image": "x", "imageID": "x", "state": {"terminated": terminated}}],
            }
        if self.state["behaviour"] == "bad_image":
            waiting = {"reason": "ErrImagePull", "message": 'failed to pull image "ghcr.io/mlops-airflow/trainer:0.1.0": manifest unknown'}
            return {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "base", "ready": False, "restartCount": 0, "image": "x", "imageID": "", "state": {"waiting": waiting}}],
            }
        if pod["_reads"] < 3:
            return {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
        return {
            "phase": "Succeeded",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "base",
                    "ready": False,
                    "restartCount": 0,
                    "image": "x",
                    "imageID": "x",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
        }

    def _pod_view(self, pod):
        view = {k: v for k, v in pod.items() if not k.startswith("_")}
        view["status"] = self._status(pod)
        return view

    def do_GET(self):
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if url.path.endswith("/pods"):
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            wanted = [s for s in selector.split(",") if s]
            items = []
            for pod in self._pods().values():
                labels = pod["metadata"].get("labels", {})
                ok = True
                for term in wanted:
                    if "!=" in term:
                        key, value = term.split("!=")
                        ok &= labels.get(key) != value
                    elif "=" in term:
                        key, value = term.split("=", 1)
                        ok &= labels.get(key.strip()) == value.strip()
                if ok:
                    items.append(self._pod_view(pod))
            return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        if url.path.endswith("/events"):
            return self.reply(200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []})
        if parts[-1] == "log":
            return self.reply(200, b"training finished\n", "text/plain")
        pod = self._pods().get(parts[-1])
        if pod is None:
            return self.reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        return self.reply(200, self._pod_view(pod))

    def do_POST(self):
        pod = self.body()
        pod["metadata"].setdefault("namespace", "mlops")
        self._pods()[pod["metadata"]["name"]] = pod
        self.state["posts"] = self.state.get("posts", 0) + 1
        return self.reply(201, self._pod_view(pod))

    def do_PATCH(self):
        name = urlparse(self.path).path.strip("/").split("/")[-1]
        patch = self.body()
        pod = self._pods().get(name)
        if pod is None:
            return self.reply(404, {"kind": "Status", "code": 404})
        pod["metadata"].setdefault("labels", {}).update((patch.get("metadata") or {}).get("labels") or {})
        return self.reply(200, self._pod_view(pod))

    def do_DELETE(self):
        name = urlparse(self.path).path.strip("/").split("/")[-1]
        self._pods().pop(name, None)
        self.state["deletes"] = self.state.get("deletes", 0) + 1
        return self.reply(200, {"kind": "Status", "status": "Success"})


@pytest.fixture
def fake_cluster(kubeconfig):
    state = {"behaviour": "succeed"}
    with FakeServer(FakeKubernetes, state=state) as server:
        state["config"] = kubeconfig(server.url)
        yield state


def task_context(operator, try_number: int):
    """The context KubernetesPodOperator reads: ``helpers.task_context`` lacks what it needs
    (``ti.map_index``, ``ti.start_date`` and ``ti.xcom_push`` for its pod labels and XComs,
    ``context["run_id"]`` and ``context["dag"]``), and the task id is the operator's."""
    ti = SimpleNamespace(
        dag_id="retrain_churn",
        task_id=operator.task_id,
        run_id="manual__1",
        map_index=-1,
        try_number=try_number,
        start_date=datetime.datetime.now(tz=datetime.UTC),
        xcom_push=lambda *a, **k: None,
    )
    return {
        "ti": ti,
        "run_id": "manual__1",
        "dag": SimpleNamespace(dag_id="retrain_churn"),
        "dag_run": SimpleNamespace(dag_id="retrain_churn", run_id="manual__1"),
    }


class TestAgainstAFakeApiServer:
    def test_unschedulable_gpu_pod_fails_with_the_reason_and_is_deleted(self, gpu_spec, fake_cluster, monkeypatch):
        from mlops_airflow.operators.training_pod import PodStartError

        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000}))
        fake_cluster["behaviour"] = "unschedulable"
        config = fake_cluster["config"]
        operator = make_operator(gpu_spec, config_file=config, schedule_timeout_seconds=2, startup_check_interval_seconds=0.2, do_xcom_push=False)
        started = time.monotonic()
        with pytest.raises(PodStartError, match=r"Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu"):
            operator.execute(task_context(operator, 1))
        assert time.monotonic() - started < 30
        assert fake_cluster["posts"] == 1
        assert fake_cluster["pods"] == {}  # deleted: it must not start training later, unobserved

    def test_bad_data_in_the_pod_fails_without_retry(self, gpu_spec, fake_cluster, monkeypatch):
        from airflow.sdk.exceptions import AirflowFailException

        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000}))
        fake_cluster["behaviour"] = "bad_data"
        operator = make_operator(gpu_spec, config_file=fake_cluster["config"], startup_check_interval_seconds=0.1, do_xcom_push=False, get_logs=False)
        with pytest.raises(AirflowFailException, match=r"exit 3.*\n.*no partitions under s3://bucket/churn"):
            operator.execute(task_context(operator, 1))
        assert len(fake_cluster["pods"]) == 1  # a failed pod is kept for inspection

    def test_image_that_cannot_be_pulled_fails_fast_with_the_reason(self, gpu_spec, fake_cluster, monkeypatch):
        from mlops_airflow.operators.training_pod import PodStartError

        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000}))
        fake_cluster["behaviour"] = "bad_image"
        config = fake_cluster["config"]
        operator = make_operator(
            gpu_spec, config_file=config, schedule_timeout_seconds=600, startup_timeout_seconds=600, startup_check_interval_seconds=0.2, do_xcom_push=False
        )
        started = time.monotonic()
        with pytest.raises(PodStartError, match=r"base: ErrImagePull: failed to pull image .*manifest unknown"):
            operator.execute(task_context(operator, 1))
        assert time.monotonic() - started < 30  # long before the 600 s start-up timeout
        assert fake_cluster["pods"] == {}

    def test_deferrable_creates_the_hardened_pod_then_defers(self, gpu_spec, fake_cluster, monkeypatch):
        from airflow.sdk.exceptions import TaskDeferred

        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000}))
        config = fake_cluster["config"]
        operator = make_operator(gpu_spec, config_file=config, deferrable=True)
        with pytest.raises(TaskDeferred) as info:
            operator.execute(task_context(operator, 1))
        classpath, kwargs = info.value.trigger.serialize()
        assert classpath.endswith("KubernetesPodTrigger")
        (pod,) = fake_cluster["pods"].values()
        assert kwargs["pod_name"] == pod["metadata"]["name"]
        assert restricted_violations(pod) == []
        assert fake_cluster["posts"] == 1

    def test_retry_after_a_lost_worker_reattaches(self, gpu_spec, fake_cluster, monkeypatch):
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "mlflow", "port": 5000}))
        config = fake_cluster["config"]
        first = make_operator(gpu_spec, config_file=config, do_xcom_push=False, startup_check_interval_seconds=0.1)
        context = task_context(first, 1)
        # Try 1 creates the pod, then its worker dies before the pod finishes.
        first.get_or_create_pod(first.build_pod_request_obj(context), context)
        assert fake_cluster["posts"] == 1

        # Try 2 finds the running pod by its labels and follows it to the end.
        second = make_operator(gpu_spec, config_file=config, do_xcom_push=False, startup_check_interval_seconds=0.1, get_logs=False)
        second.execute(task_context(second, 2))
        assert fake_cluster["posts"] == 1  # one pod for the logical run
