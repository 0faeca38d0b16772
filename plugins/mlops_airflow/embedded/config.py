"""The embedded stack's configuration: where it lives, its ports, and the environment its processes inherit.

The demo harness's own settings (``MLOPS_STATE_DIR``, ``MLOPS_*_PORT``, ``MLOPS_EMBEDDED_DATABASE``)
are read here; the package's settings are :mod:`mlops_airflow.settings`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlops_airflow.embedded.postgres import database_kind
from mlops_airflow.serving.local_ports import LocalPorts

STACK_MARKER_ENV = "MLOPS_EMBEDDED_STACK"
STATE_FILE = "stack.json"


SETTINGS_FILE = "airflow_settings.yaml"


class StackError(RuntimeError):
    """The stack could not be started or stopped; the message says where to look."""


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which ports it uses."""

    repo_root: Path
    state_dir: Path
    airflow_port: int = 8080
    mlflow_port: int = 5500
    worker_log_port: int = 8793
    trigger_log_port: int = 8794
    statsd_port: int = 8125
    serving_ports: LocalPorts = field(default_factory=LocalPorts)
    host: str = "127.0.0.1"
    database: str = "postgres"  # or "sqlite" (MLOPS_EMBEDDED_DATABASE)
    airflow_start_timeout: float = 240.0
    mlflow_start_timeout: float = 90.0

    @classmethod
    def from_env(cls, repo_root: Path | None = None, environ: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if environ is None else environ
        root = (repo_root or Path.cwd()).resolve()
        state = Path(env.get("MLOPS_STATE_DIR") or root / ".local").resolve()  # empty means unset
        return cls(
            repo_root=root,
            state_dir=state,
            airflow_port=int(env.get("MLOPS_AIRFLOW_PORT", "8080")),
            mlflow_port=int(env.get("MLOPS_MLFLOW_PORT", "5500")),
            worker_log_port=int(env.get("MLOPS_WORKER_LOG_PORT", "8793")),
            trigger_log_port=int(env.get("MLOPS_TRIGGER_LOG_PORT", "8794")),
            statsd_port=int(env.get("MLOPS_STATSD_PORT", "8125")),
            serving_ports=LocalPorts.from_env(dict(env)),
            database=database_kind(env),
        )

    @property
    def serving_dir(self) -> Path:
        return self.state_dir / "serving"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def mlflow_dir(self) -> Path:
        return self.state_dir / "mlflow"

    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def specs_dir(self) -> Path:
        """The stack's copies of the model specs (see :meth:`EmbeddedStack.write_specs`)."""
        return self.state_dir / "models"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def marker(self) -> str:
        return str(self.state_dir)

    @property
    def admin_password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def admin_password(self) -> str | None:
        try:
            return json.loads(self.admin_password_file.read_text())["admin"]
        except (OSError, ValueError, KeyError):
            return None


# Inherited settings that would point the stack at someone else's state.
_FOREIGN_SETTINGS = ("AIRFLOW_HOME", "AIRFLOW__DATABASE__", "AIRFLOW__CORE__UNIT_TEST_MODE", "AIRFLOW_CONN_", "MLFLOW_TRACKING_", "MLOPS_STACK_OWNER_PID")


def inherited_env() -> dict[str, str]:
    """This process's environment without settings that belong to another Airflow or MLflow."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_SETTINGS)}
