"""MlflowHook: the tracking server and model registry, one thin method per registry call."""

from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from mlops_airflow.constants import DEFAULT_MLFLOW_CONN_ID
from mlops_airflow.core.tracking import tracking_server_problem
from mlops_airflow.exceptions import TrackingServerUnavailableError
from mlops_airflow.hooks.mlflow_auth import refuse_default_admin_password

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient


class MlflowHook(BaseHook):
    """
    Talk to an MLflow tracking server and registry.

    The connection gives the server: ``extra.tracking_uri`` when set (any MLflow URI,
    ``sqlite:///...`` included), else ``<schema or http>://<host>:<port>``. Login and
    password become MLflow's basic-auth credentials; they are handed to the client through
    the environment and never logged. ``extra.lock_secret`` keys the
    seal of the registry lock (:mod:`mlops_airflow.hooks.registry_lock`).

    :param mlflow_conn_id: Airflow connection id of the MLflow server.
    :param tracking_uri: explicit tracking URI; beats the connection.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = DEFAULT_MLFLOW_CONN_ID
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID, tracking_uri: str | None = None) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self._tracking_uri = tracking_uri

    @cached_property
    def connection(self):
        return self.get_connection(self.mlflow_conn_id)

    def get_tracking_uri(self) -> str:
        if self._tracking_uri:
            return self._tracking_uri
        conn = self.connection
        explicit = (conn.extra_dejson or {}).get("tracking_uri")
        if explicit:
            return str(explicit)
        if not conn.host:
            raise ValueError(f"connection {self.mlflow_conn_id!r} has neither a host nor extra.tracking_uri")
        if "://" in conn.host:
            base = conn.host.rstrip("/")
        else:
            scheme = conn.schema or "http"
            base = f"{scheme}://{conn.host}"
        return f"{base}:{conn.port}" if conn.port else base

    def get_env(self) -> dict[str, str]:
        """Environment for a process that talks to MLflow (a training subprocess or container)."""
        # The registry lives on the same server; saying so beats an inherited MLFLOW_REGISTRY_URI.
        uri = self.get_tracking_uri()
        env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
        if self._tracking_uri is None:
            conn = self.connection
            if conn.login:
                env["MLFLOW_TRACKING_USERNAME"] = conn.login
            if conn.password:
                env["MLFLOW_TRACKING_PASSWORD"] = conn.password
        return env

    def get_lock_secret(self) -> str:
        """The key that seals the registry lock: the connection's ``extra.lock_secret``.

        Never the password: every MLflow user can read a seal, and a seal keyed by the password
        would let them test guesses of it offline. Deployments that share a registry share the
        lock secret. Empty with an explicit tracking URI or no ``lock_secret``: the seal then
        tells our locks only from hand-made ones, and anyone who reads this code can forge it.
        """
        if self._tracking_uri is not None:
            return ""
        return str((self.connection.extra_dejson or {}).get("lock_secret") or "")

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        # MLflow reads credentials only from the environment; a task process serves one task.
        # The URIs are passed explicitly below, so they do not leak into the process environment.
        uri = self.get_tracking_uri()
        refuse_default_admin_password(uri)  # before our credentials go anywhere near that server
        os.environ.update({k: v for k, v in self.get_env().items() if k.endswith(("_USERNAME", "_PASSWORD"))})
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def get_conn(self) -> MlflowClient:
        return self.client

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version that ``alias`` points at, or ``None`` when the alias (or model) does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        return self.client.get_model_version(name, str(version))

    def search_versions_by_tag(self, name: str, key: str, value: str) -> list[ModelVersion]:
        """The versions of ``name`` whose tag ``key`` is ``value``."""
        for text in (name, key, value):
            if "'" in text or "`" in text:
                raise ValueError(f"a quote in a registry search: {text!r}")
        return list(self.client.search_model_versions(f"name = '{name}' and tags.`{key}` = '{value}'"))

    def estimator_kind(self, run_id: str | None, default: str) -> str:
        """The estimator kind a version's run was trained as; it picks the package's trusted types (``default`` without a run)."""
        from mlops_airflow.core.model_loading import estimator_kind

        return estimator_kind(self.get_run_params(run_id) if run_id else {}, default)

    def load_model(self, name: str, version: str | int, *, estimator_kind: str):
        """
        Load version ``version`` of ``name`` safely, as a pyfunc model: skops only, with the package's trusted types.

        The MLmodel is read first; a version in any other format (pickle, cloudpickle, a custom
        pyfunc) is refused before anything of it is deserialised, and the skops file is loaded
        with the types the package trusts for ``estimator_kind``, never the model's own list.

        :raises UnsafeModelVersionError: naming the version and the reason (no retry).
        """
        from mlops_airflow.core.model_loading import load_model_dir

        return self._with_model_dir(name, version, estimator_kind, load_model_dir)

    def check_model(self, name: str, version: str | int, *, estimator_kind: str) -> None:
        """What :meth:`load_model` checks, without loading: a version a model server may load. Same errors."""
        from mlops_airflow.core.model_loading import inspect_model_dir

        self._with_model_dir(name, version, estimator_kind, inspect_model_dir)

    def _with_model_dir(self, name: str, version: str | int, estimator_kind: str, action):
        import tempfile

        import mlflow.artifacts

        from mlops_airflow.core.model_loading import UnsafeModelError, trusted_types
        from mlops_airflow.exceptions import UnsafeModelVersionError

        what = f"{name} v{version}"
        try:
            trusted = trusted_types(estimator_kind)
        except UnsafeModelError as err:
            raise UnsafeModelVersionError(f"refusing to load {what}: {err}") from err
        self.client  # noqa: B018 - exports the connection's credentials
        uri = self.get_tracking_uri()
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder, self._fluent_uris():
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=folder, tracking_uri=uri, registry_uri=uri)
            try:
                return action(path, what=what, trusted=trusted)
            except UnsafeModelError as err:
                raise UnsafeModelVersionError(f"refusing to load {err}") from err

    @contextmanager
    def _fluent_uris(self):
        """Point MLflow's process-wide (fluent) URIs at this server for a block, then put them back.

        ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment;
        restoring both keeps one task's server from leaking into what runs after it.
        """
        import mlflow

        keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
        saved = {key: os.environ.get(key) for key in keys}
        uri = self.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
            mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def ensure_reachable(self, timeout: float = 10.0) -> None:
        """Raise a retryable :class:`TrackingServerUnavailableError` when the server does not answer."""
        problem = tracking_server_problem(self.get_tracking_uri(), timeout)
        if problem:
            raise TrackingServerUnavailableError(problem)
        refuse_default_admin_password(self.get_tracking_uri(), timeout=timeout)

    def get_run_params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def load_reference_sample(self, run_id: str):
        """The reference sample a training run logged (``reference/features.parquet``) as a DataFrame."""
        import pandas as pd

        from mlops_airflow.constants import REFERENCE_SAMPLE_ARTIFACT

        return pd.read_parquet(self.client.download_artifacts(run_id, REFERENCE_SAMPLE_ARTIFACT))

    def load_validation_scores(self, run_id: str):
        """The validation rows as a training run scored them (``reference/validation_scores.parquet``), or None when the run has none.

        Only a missing artifact is None (a run trained before they were logged); any other error is raised.
        """
        import pandas as pd

        from mlops_airflow.constants import VALIDATION_SCORES_ARTIFACT

        folder, _, _ = VALIDATION_SCORES_ARTIFACT.rpartition("/")
        if VALIDATION_SCORES_ARTIFACT not in {artifact.path for artifact in self.client.list_artifacts(run_id, folder)}:
            return None
        return pd.read_parquet(self.client.download_artifacts(run_id, VALIDATION_SCORES_ARTIFACT))

    def set_version_tags(self, name: str, version: str | int, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, value)

    def log_dict(self, run_id: str, payload: dict, artifact_file: str) -> None:
        """Write a JSON artifact to a run; MLflow uploads a complete temporary file, never half of one."""
        self.client.log_dict(run_id, payload, artifact_file)

    def log_day_metrics(self, run_id: str, rows: list[tuple[str, float, dt.date]], *, measured_at: dt.datetime | None = None) -> None:
        """Metrics describing days: each timestamped at its day's midnight (UTC), or at ``measured_at``, its step the day's number since 1970-01-01.

        MLflow keeps every value logged, so a re-measured day adds a point at the same step;
        with ``measured_at`` the newest measurement of a day is the one with the latest timestamp.
        """
        from mlflow.entities import Metric

        epoch = dt.date(1970, 1, 1)

        def timestamp(day: dt.date) -> int:
            return int((measured_at or dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)).timestamp() * 1000)

        metrics = [Metric(key=key, value=float(value), timestamp=timestamp(day), step=(day - epoch).days) for key, value, day in rows]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

    def create_registered_model(self, name: str, *, tags: dict[str, str], description: str) -> bool:
        """Create a registered model; ``False`` when one of that name exists (an atomic test-and-set)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, tags=tags, description=description)
        except MlflowException as err:
            # The SQL store answers a taken name by reading the existing model back; when its
            # holder deletes it in between, the create fails with RESOURCE_DOES_NOT_EXIST.
            # Either way someone else held the name at the moment we tried.
            if err.error_code in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                return False
            raise
        return True

    def get_registered_model_tags(self, name: str) -> dict[str, str] | None:
        """A registered model's tags, or ``None`` when it does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(name).tags)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self.client.set_registered_model_tag(name, key, value)

    def delete_registered_model(self, name: str) -> None:
        """Delete a registered model; one that is already gone is fine."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.client.search_experiments(max_results=1)
        except Exception as err:  # the UI shows the message; any failure is a failed test
            return False, f"MLflow at {self.get_tracking_uri()} failed: {err}"
        return True, f"MLflow at {self.get_tracking_uri()} answered"
