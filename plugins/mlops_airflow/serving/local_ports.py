"""Ports and folders of the local serving backend; light, so the embedded stack can read them without Airflow."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

SERVING_STATE_DIR_ENV = "MLOPS_SERVING_STATE_DIR"


@dataclass(frozen=True)
class LocalPorts:
    live: int = 8500
    blue: int = 8501
    green: int = 8502

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalPorts:
        env = os.environ if environ is None else environ
        return cls(
            live=int(env.get("MLOPS_SERVING_LIVE_PORT", cls.live)),
            blue=int(env.get("MLOPS_SERVING_BLUE_PORT", cls.blue)),
            green=int(env.get("MLOPS_SERVING_GREEN_PORT", cls.green)),
        )

    def of(self, color: str) -> int:
        """The port of a colour (``Color`` is a ``str``)."""
        return self.blue if str(color) == "blue" else self.green
