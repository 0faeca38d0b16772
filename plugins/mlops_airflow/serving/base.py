"""The ServingBackend protocol: everything the serving operators may ask of a backend.

Where it sits in the loop: promote -> **deploy idle colour -> smoke -> switch -> verify**
(-> rollback). Two colours serve the model; the live endpoint points at exactly one.
The operators use only this protocol, so the Kubernetes and local backends are
interchangeable. :class:`BlueGreenBackend` is what the three backends share: the wait for a
colour to be ready, and the guard that keeps deploys and scale-downs off the live colour.
"""

from __future__ import annotations

import abc
import enum
import time
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


class SplitUnsupportedError(MlopsError):
    """The backend cannot split live traffic between the colours."""


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
class StickySplit:
    """A client keeps its colour by a cookie the router sets: ``cookie`` names it; ``secret`` keys its value (a client cannot
    derive it from the colour's address; it can still copy another client's)."""

    cookie: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class ServingStatus:
    live: Color | None  # the colour with most of the live traffic
    colors: dict[Color, ColorState] = field(default_factory=dict)
    weights: dict[Color, int] = field(default_factory=dict)  # percent of live traffic per colour while split (a canary); empty: all on live

    @property
    def split(self) -> bool:
        """Whether live traffic goes to both colours."""
        return len([w for w in self.weights.values() if w > 0]) > 1

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

    def set_weights(self, weights: dict[Color, int], *, sticky_cookie: str | None = None) -> None:
        """Split live traffic: percent per colour (summing to 100); every colour with a share must be ready.

        ``sticky_cookie``: each client keeps the colour it was first given, by this cookie (an A/B test).
        """


class BlueGreenBackend(abc.ABC):
    """The parts of :class:`ServingBackend` every backend does the same way.

    A backend names its colours (:meth:`color_name`), says which one is live
    (:meth:`live_color`) and how ready one is (:meth:`is_ready`); this base waits for
    readiness and refuses, before anything changes, to deploy onto or scale down the live colour.
    """

    model: str
    ready_poll: float = 2.0  # seconds between two readiness checks

    @abc.abstractmethod
    def live_color(self) -> Color | None:
        """The colour live traffic goes to now (``None``: nothing is live yet)."""

    @abc.abstractmethod
    def is_ready(self, color: Color) -> ColorState: ...

    def color_name(self, color: Color) -> str:
        """How the backend names one colour's server in messages (a container, a Deployment, a process)."""
        return f"{self.model}-{color}"

    def cannot_become_ready(self, state: ColorState) -> bool:
        """Whether waiting longer is pointless (the server is gone or reported unhealthy)."""
        return False

    def not_ready_detail(self, color: Color) -> str:
        """What a not-ready error adds after the reason (a log tail), starting with its own separator."""
        return ""

    def wait_ready(self, color: Color, *, timeout: float, poll: float | None = None) -> ColorState:
        """Block until ``color`` is ready; :class:`ColorNotReadyError` with the reason when it is not in time."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.is_ready(color)
            if state.ready:
                return state
            if self.cannot_become_ready(state) or time.monotonic() >= deadline:
                raise ColorNotReadyError(f"{self.color_name(color)} is not ready after {timeout:.0f} s ({state.detail}){self.not_ready_detail(color)}")
            time.sleep(self.ready_poll if poll is None else poll)

    def traffic_weights(self) -> dict[Color, int]:
        """Percent of live traffic per colour while it is split; empty when it all goes to the live colour."""
        return {}

    def set_weights(self, weights: dict[Color, int], *, sticky_cookie: str | None = None) -> None:
        raise SplitUnsupportedError(
            f"{type(self).__name__} sends live traffic to one colour only (blue-green); a split (canary, A/B) needs the local or Docker backend"
        )

    def refuse_live(self, color: Color, action: str) -> None:
        """:class:`LiveColorError` when ``color`` takes live traffic: ``action`` (a deploy, a scale-down) must never touch it."""
        if self.live_color() is color:
            raise LiveColorError(f"refusing to {action}: it is the live colour")
        if self.traffic_weights().get(color, 0) > 0:
            raise LiveColorError(f"refusing to {action}: it takes {self.traffic_weights()[color]}% of live traffic")
