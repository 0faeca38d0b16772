"""BlueGreenBackend: the readiness wait and the live-colour guard the backends share; Color and ServingStatus."""

from __future__ import annotations

import pytest

from mlops_airflow.serving import base
from mlops_airflow.serving.base import BlueGreenBackend, Color, ColorNotReadyError, ColorState, LiveColorError, ServingStatus


class InMemoryBackend(BlueGreenBackend):
    """Ready after ``ready_after`` not-ready answers; the base's hooks left as they are."""

    model = "churn"

    def __init__(self, *, ready_after: int = 0, live: Color | None = None, detail: str = "starting") -> None:
        self.ready_after, self.live, self.detail = ready_after, live, detail
        self.polls = 0

    def live_color(self) -> Color | None:
        return self.live

    def is_ready(self, color: Color) -> ColorState:
        self.polls += 1
        ready = self.polls > self.ready_after
        return ColorState(color, "3", ready, int(ready), "answers" if ready else self.detail)


class ContainerBackend(InMemoryBackend):
    """One that names its servers, knows when waiting is pointless, and adds a log tail."""

    ready_poll = 0.25

    def color_name(self, color: Color) -> str:
        return f"container {self.model}-serving-{color}"

    def cannot_become_ready(self, state: ColorState) -> bool:
        return state.detail == "exited"

    def not_ready_detail(self, color: Color) -> str:
        return f"; log tail:\n{color} crashed"


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The waits between polls, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(base.time, "sleep", recorded.append)
    return recorded


class TestWaitReady:
    @pytest.mark.parametrize("not_ready", [pytest.param(0, id="ready-at-once"), pytest.param(1, id="after-one-poll"), pytest.param(4, id="after-four-polls")])
    def test_returns_the_ready_state_after_polling(self, sleeps, not_ready):
        backend = InMemoryBackend(ready_after=not_ready)
        state = backend.wait_ready(Color.GREEN, timeout=60, poll=0.5)
        assert state == ColorState(Color.GREEN, "3", True, 1, "answers")
        assert backend.polls == not_ready + 1
        assert sleeps == [0.5] * not_ready

    @pytest.mark.parametrize(
        ("backend", "interval"),
        [pytest.param(InMemoryBackend(ready_after=2), 2.0, id="base-default"), pytest.param(ContainerBackend(ready_after=2), 0.25, id="backend-interval")],
    )
    def test_without_poll_it_waits_the_backends_interval(self, sleeps, backend, interval):
        backend.wait_ready(Color.BLUE, timeout=60)
        assert sleeps == [interval, interval]

    def test_gives_up_at_once_when_the_colour_cannot_become_ready(self, sleeps):
        backend = ContainerBackend(ready_after=10, detail="exited")
        with pytest.raises(ColorNotReadyError, match="exited"):
            backend.wait_ready(Color.BLUE, timeout=600, poll=0.5)
        assert (backend.polls, sleeps) == (1, [])

    def test_a_not_ready_detail_that_may_change_is_waited_on(self, sleeps):
        backend = ContainerBackend(ready_after=3, detail="starting")
        assert backend.wait_ready(Color.BLUE, timeout=600, poll=0.5).ready
        assert backend.polls == 4

    @pytest.mark.parametrize(
        ("backend", "color", "message"),
        [
            pytest.param(InMemoryBackend(ready_after=99), Color.BLUE, "churn-blue is not ready after 0 s (starting)", id="base-names"),
            pytest.param(
                ContainerBackend(ready_after=99, detail="/ping answered 503"),
                Color.GREEN,
                "container churn-serving-green is not ready after 0 s (/ping answered 503); log tail:\ngreen crashed",
                id="backend-names-and-log-tail",
            ),
        ],
    )
    def test_times_out_naming_the_colour_the_reason_and_the_detail(self, sleeps, backend, color, message):
        with pytest.raises(ColorNotReadyError) as raised:
            backend.wait_ready(color, timeout=0, poll=0.5)
        assert str(raised.value) == message
        assert backend.polls == 1  # asked once, even with no time left

    def test_polls_until_the_deadline_passes(self):
        backend = InMemoryBackend(ready_after=10**6)
        with pytest.raises(ColorNotReadyError, match="churn-blue is not ready after 0 s"):
            backend.wait_ready(Color.BLUE, timeout=0.05, poll=0.005)
        assert 1 < backend.polls < 1000


class TestRefuseLive:
    @pytest.mark.parametrize(
        ("live", "color"),
        [
            pytest.param(Color.BLUE, Color.GREEN, id="the-other-colour"),
            pytest.param(Color.GREEN, Color.BLUE, id="the-other-colour-green-live"),
            pytest.param(None, Color.BLUE, id="nothing-live"),
        ],
    )
    def test_an_idle_colour_is_allowed(self, live, color):
        InMemoryBackend(live=live).refuse_live(color, f"deploy churn v3 onto {color}")

    @pytest.mark.parametrize("color", [pytest.param(Color.BLUE, id="blue"), pytest.param(Color.GREEN, id="green")])
    def test_the_live_colour_is_refused_naming_the_action(self, color):
        with pytest.raises(LiveColorError) as raised:
            InMemoryBackend(live=color).refuse_live(color, f"scale down churn-{color}")
        assert str(raised.value) == f"refusing to scale down churn-{color}: it is the live colour"


class TestColorName:
    @pytest.mark.parametrize("color", [pytest.param(Color.BLUE, id="blue"), pytest.param(Color.GREEN, id="green")])
    def test_default_is_model_and_colour(self, color):
        assert InMemoryBackend().color_name(color) == f"churn-{color.value}"


class TestColor:
    @pytest.mark.parametrize(("color", "other"), [pytest.param(Color.BLUE, Color.GREEN, id="blue"), pytest.param(Color.GREEN, Color.BLUE, id="green")])
    def test_other(self, color, other):
        assert color.other is other
        assert color.other.other is color

    def test_a_colour_is_its_name(self):
        assert (Color("green"), str(Color.BLUE)) == (Color.GREEN, "blue")


def state(color: Color, version: str | None) -> ColorState:
    return ColorState(color, version, version is not None)


class TestServingStatus:
    @pytest.mark.parametrize(
        ("live", "idle"),
        [
            pytest.param(None, Color.BLUE, id="nothing-live-starts-blue"),
            pytest.param(Color.BLUE, Color.GREEN, id="blue-live"),
            pytest.param(Color.GREEN, Color.BLUE, id="green-live"),
        ],
    )
    def test_idle(self, live, idle):
        assert ServingStatus(live=live).idle is idle

    @pytest.mark.parametrize(
        ("status", "version"),
        [
            pytest.param(
                ServingStatus(live=Color.GREEN, colors={Color.BLUE: state(Color.BLUE, "1"), Color.GREEN: state(Color.GREEN, "2")}), "2", id="live-green"
            ),
            pytest.param(
                ServingStatus(live=Color.BLUE, colors={Color.BLUE: state(Color.BLUE, "1"), Color.GREEN: state(Color.GREEN, "2")}), "1", id="live-blue"
            ),
            pytest.param(ServingStatus(live=None, colors={Color.BLUE: state(Color.BLUE, "1")}), None, id="nothing-live"),
            pytest.param(ServingStatus(live=Color.GREEN, colors={Color.BLUE: state(Color.BLUE, "1")}), None, id="live-colour-unknown"),
            pytest.param(ServingStatus(live=Color.BLUE, colors={Color.BLUE: state(Color.BLUE, None)}), None, id="live-colour-runs-nothing"),
        ],
    )
    def test_live_version(self, status, version):
        assert status.live_version == version
