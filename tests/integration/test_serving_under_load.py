"""The demo's churn model served under load through the live URL, by the real model servers behind Caddy.

Clients with kept-alive connections and clients that open a connection per request keep requests in
flight while a release switches the live colour and a hand rollback switches it back: every request
must be answered, with exactly the offline predictions of the version that answered. Past a colour's
limits, work is refused at once with 503 and Retry-After, and nothing is left queued behind the burst.
Throughput and latency are the benchmark's (``bench/serving_bench.py``); here they are printed only.
"""

from __future__ import annotations

import json

import pytest
from load import Load
from served_churn import backend_for, release, which_version

from mlops_airflow.serving.base import Color, SwitchOutcome
from mlops_airflow.serving.model_server import Capacity

pytestmark = pytest.mark.integration


def test_a_release_and_a_hand_rollback_under_load_lose_no_request_and_every_answer_is_exact(tmp_path, churn):
    backend = backend_for(tmp_path, capacity=Capacity(workers=2))
    try:
        release(backend, Color.BLUE, "1", churn)
        assert backend.switch(Color.BLUE) is SwitchOutcome.SWITCHED
        release(backend, Color.GREEN, "2", churn)
        switches = []  # (began, ended, colour)
        with Load(backend.live_url(), churn["bodies"], keep_alive=4, per_request=2) as load:
            load.wait_for(300)
            for target in (Color.GREEN, Color.BLUE, Color.GREEN, Color.BLUE):  # a release, a hand rollback, twice
                count = len(load.answers)
                began = load_clock()
                assert backend.switch(target) is SwitchOutcome.SWITCHED
                switches.append((began, load_clock(), target))
                load.wait_for(count + 150)
            load.wait_for(len(load.answers) + 150)  # and more on the colour the hand rollback left live
            answers = load.stop()
        print(f"\nchurn under load through the live URL, 4 switches: {load.summary()}")
        assert [a for a in answers if a.status != 200] == []
        assert {a.client for a in answers} == {"keep-alive", "per-request"}
        versions = [which_version(churn, a) for a in answers]
        assert None not in versions, "an answer that matches neither version's offline predictions"
        assert {"1", "2"} <= set(versions)
        for began, ended, _ in switches:  # each switch happened while requests were in flight
            assert any(a.sent < ended and a.answered > began for a in answers)
        # A request sent once the last switch (back to blue, v1) had returned is answered by v1.
        last_switch_end = switches[-1][1]
        assert {v for a, v in zip(answers, versions, strict=True) if a.sent > last_switch_end} == {"1"}
    finally:
        backend.stop_all()


def load_clock() -> float:
    import time

    return time.perf_counter()


def test_past_its_limits_a_colour_refuses_at_once_with_retry_after_and_keeps_no_backlog(tmp_path, churn):
    # One worker that lets two requests wait or run: 24 clients are far past it.
    backend = backend_for(tmp_path, capacity=Capacity(workers=1, max_pending=2))
    try:
        release(backend, Color.BLUE, "1", churn)
        backend.switch(Color.BLUE)
        with Load(backend.live_url(), churn["bodies"], keep_alive=16, per_request=8) as load:
            load.wait_for(600)
            answers = load.stop()
        print(f"\noverload of one worker with max_pending 2: {load.summary()}")
        refused = [a for a in answers if a.status == 503]
        assert refused, "24 clients against a limit of 2 were never refused"
        assert {a.status for a in answers} == {200, 503}, "every request is answered or refused, none lost or timed out"
        assert {a.retry_after for a in refused} == {"1"}
        assert {json.loads(a.body)["error_code"] for a in refused} == {"TEMPORARILY_UNAVAILABLE"}
        assert all(which_version(churn, a) == "1" for a in answers if a.status == 200)
        # Nothing was queued behind the burst: the next requests, one at a time, are all served.
        with Load(backend.live_url(), churn["bodies"], keep_alive=1, per_request=0) as after:
            after.wait_for(20)
            assert {a.status for a in after.stop()} == {200}
    finally:
        backend.stop_all()


def test_two_models_under_load_at_once_each_serve_their_own_version(tmp_path, churn):
    alpha, beta = backend_for(tmp_path, "alpha", Capacity(workers=1)), backend_for(tmp_path, "beta", Capacity(workers=1))
    try:
        for backend, version in ((alpha, "1"), (beta, "2")):
            release(backend, Color.BLUE, version, churn)
            backend.switch(Color.BLUE)
        with (
            Load(alpha.live_url(), churn["bodies"], keep_alive=3, per_request=1) as on_alpha,
            Load(beta.live_url(), churn["bodies"], keep_alive=3, per_request=1) as on_beta,
        ):
            on_alpha.wait_for(200)
            on_beta.wait_for(200)
        for load, version in ((on_alpha, "1"), (on_beta, "2")):
            answers = load.stop()
            print(f"\n{version}: {load.summary()}")
            assert {a.status for a in answers} == {200}
            assert {which_version(churn, a) for a in answers} == {version}
    finally:
        alpha.stop_all()
        beta.stop_all()


def test_a_worker_that_dies_is_started_again_and_the_colour_reports_its_workers(tmp_path, churn):
    import os
    import signal
    import time

    from mlops_airflow.serving.local_processes import group_members

    backend = backend_for(tmp_path, capacity=Capacity(workers=2))
    try:
        release(backend, Color.BLUE, "1", churn)
        backend.switch(Color.BLUE)
        state = backend.is_ready(Color.BLUE)
        assert (state.ready, state.replicas, state.detail) == (True, 2, "answers /ping (2 workers)")
        server = backend._load()["colors"]["blue"]["pgid"]
        victim = next(pid for pid in group_members(server) if pid != server)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (victim not in (members := group_members(server)) and len(members) == 3):
            assert time.monotonic() < deadline, f"no worker replaced {victim}: {members}"
            time.sleep(0.1)
        assert backend.is_ready(Color.BLUE).replicas == 2
        with Load(backend.live_url(), churn["bodies"], keep_alive=2, per_request=1) as load:
            load.wait_for(60)
        assert {a.status for a in load.stop()} == {200}
        assert "ended (signal SIGKILL); starting another" in (backend.state_dir / "logs" / "churn-blue.log").read_text()
    finally:
        backend.stop_all()
