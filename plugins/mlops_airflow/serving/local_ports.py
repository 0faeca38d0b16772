"""Ports and folders of the local serving backend; light, so the embedded stack can read them without Airflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlops_airflow.settings import serving_port


@dataclass(frozen=True)
class LocalPorts:
    live: int = 8500
    blue: int = 8501
    green: int = 8502

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalPorts:
        return cls(
            live=int(serving_port("live_port", environ) or cls.live),
            blue=int(serving_port("blue_port", environ) or cls.blue),
            green=int(serving_port("green_port", environ) or cls.green),
        )

    def of(self, color: str) -> int:
        """The port of a colour (``Color`` is a ``str``)."""
        return self.blue if str(color) == "blue" else self.green
