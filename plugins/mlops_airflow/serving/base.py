"""The ServingBackend protocol: everything the serving operators may ask of a backend.

Where it sits in the loop: promote -> **deploy idle colour -> smoke -> switch -> verify**
(-> rollback). Two colours serve the model; the live endpoint points at exactly one.
The operators use only this protocol, so the Kubernetes and local backends are
interchangeable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mlops_airflow.exceptions import MlopsError


class Color(enum.StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Color:
        return Color.GREEN if self is Color.BLUE else Color.BLUE


class SwitchOutcome(enum.StrEnum):
    SWITCHED = "switched"
    ALREADY_LIVE = "already_live"


class ColorNotReadyError(MlopsError):
    """A colour is not (yet) ready to serve; switching to it is refused."""


class SwitchConflictError(MlopsError):
    """The live endpoint kept changing under us; retry."""


class LiveColorError(MlopsError):
    """An action that must never touch the live colour was asked to."""


@dataclass(frozen=True)
class ColorState:
    """One colour: which model version it runs and whether it is ready to take traffic."""

    color: Color
    version: str | None
    ready: bool
    replicas: int = 0
    detail: str = ""


@dataclass(frozen=True)
class ServingStatus:
    live: Color | None
    colors: dict[Color, ColorState] = field(default_factory=dict)

    @property
    def idle(self) -> Color:
        """The colour a new version goes to: the one not live (blue when nothing is live yet)."""
        return self.live.other if self.live is not None else Color.BLUE

    @property
    def live_version(self) -> str | None:
        return self.colors[self.live].version if self.live is not None and self.live in self.colors else None


@runtime_checkable
class ServingBackend(Protocol):
    """What a serving backend does. Every method is safe to call again after a failure."""

    def status(self) -> ServingStatus: ...

    def deploy(self, color: Color, version: str, model_uri: str, *, estimator_kind: str) -> bool:
        """Run ``model_uri`` on ``color`` (never the live one); ``False`` when it already runs it.

        The server loads it with :mod:`mlops_airflow.core.model_loading` (skops, the package's trusted
        types for ``estimator_kind``), with MLflow's pickle loaders switched off.
        """

    def is_ready(self, color: Color) -> ColorState: ...

    def wait_ready(self, color: Color, *, timeout: float, poll: float = 2.0) -> ColorState:
        """Block until ``color`` is ready; :class:`ColorNotReadyError` with the reason when it is not in time."""

    def preview_url(self, color: Color) -> str: ...

    def live_url(self) -> str: ...

    def switch(self, color: Color) -> SwitchOutcome:
        """Point live traffic at ``color``: refused when it is not ready, a no-op when it is already live."""

    def scale_down(self, color: Color) -> bool:
        """Stop ``color`` (never the live one); ``False`` when it was already down."""
