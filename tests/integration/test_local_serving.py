"""The local serving backend with real processes: two MLflow scoring servers behind Caddy.

Six clients keep requests in flight through the live URL while the live
colour switches ten times; no request may fail.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import free_port

from mlops_airflow.serving.base import Color, ColorNotReadyError, LiveColorError, SwitchOutcome
from mlops_airflow.serving.local import LocalServingBackend
from mlops_airflow.serving.local_ports import LocalPorts
from mlops_airflow.serving.local_processes import group_alive

pytestmark = pytest.mark.integration

ROWS = {"dataframe_split": {"columns": ["x1", "x2"], "data": [[0.1, 0.2], [0.9, 0.8]]}}


def predict(url: str, timeout: float = 5.0) -> tuple[int, float, dict | None]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(ROWS).encode(), headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, time.perf_counter() - started, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, time.perf_counter() - started, None
    except OSError:
        return 0, time.perf_counter() - started, None


def wait_for(condition, what: str, timeout: float = 30.0):
    """Poll ``condition`` until it returns something true; that value. Fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)
    return value


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two saved scikit-learn models that disagree, as file URIs."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("models")
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.2, 0.1], [0.8, 0.9]])
    uris = {}
    for version, labels in (("1", [0, 1, 0, 1]), ("2", [1, 0, 1, 0])):
        path = root / f"v{version}"
        mlflow.sklearn.save_model(LogisticRegression().fit(x, labels), str(path), pip_requirements=["scikit-learn"])
        uris[version] = path.as_uri()
    return uris


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    ports = LocalPorts(live=free_port(), blue=free_port(), green=free_port())
    serving = LocalServingBackend(model="toy", state_dir=tmp_path_factory.mktemp("serving"), ports=ports)
    yield serving
    serving.stop_all()


def test_deploy_switch_and_guards(backend, models):
    assert backend.status().live is None
    assert backend.deploy(Color.BLUE, "1", models["1"], estimator_kind="logistic_regression") is True
    backend.wait_ready(Color.BLUE, timeout=90)
    assert backend.deploy(Color.BLUE, "1", models["1"], estimator_kind="logistic_regression") is False  # already running it
    with pytest.raises(ColorNotReadyError):
        backend.switch(Color.GREEN)
    assert backend.switch(Color.BLUE) is SwitchOutcome.SWITCHED
    assert backend.switch(Color.BLUE) is SwitchOutcome.ALREADY_LIVE
    with pytest.raises(LiveColorError):
        backend.deploy(Color.BLUE, "2", models["2"], estimator_kind="logistic_regression")
    status, _, body = predict(backend.live_url())
    assert (status, body["predictions"]) == (200, [0, 1])
    # A new backend object (a restarted task or stack) reads the same truth.
    again = LocalServingBackend(model="toy", state_dir=backend.state_dir, ports=backend.ports)
    assert again.status().live is Color.BLUE
    assert again.status().live_version == "1"


def test_no_request_fails_during_ten_switchovers(backend, models):
    backend.deploy(Color.GREEN, "2", models["2"], estimator_kind="logistic_regression")
    backend.wait_ready(Color.GREEN, timeout=90)
    if backend.status().live is None:
        backend.deploy(Color.BLUE, "1", models["1"], estimator_kind="logistic_regression")
        backend.wait_ready(Color.BLUE, timeout=90)
        backend.switch(Color.BLUE)
    results: list[tuple[int, float, float]] = []  # status, sent, answered (perf_counter)
    stop = threading.Event()

    def client():
        while not stop.is_set():
            sent = time.perf_counter()
            status, _, _ = predict(backend.live_url())
            results.append((status, sent, time.perf_counter()))

    def answered(count: int):
        return lambda: len(results) >= count

    clients = [threading.Thread(target=client, daemon=True) for _ in range(6)]
    started = time.monotonic()
    for thread in clients:
        thread.start()
    wait_for(answered(50), "the clients' first 50 answers")
    switches = []  # (began, ended)
    for _ in range(10):
        target = backend.status().live.other
        began = time.perf_counter()
        assert backend.switch(target) is SwitchOutcome.SWITCHED
        switches.append((began, time.perf_counter()))
        wait_for(answered(len(results) + 50), f"50 answers after the switch to {target}")  # traffic through the new colour
    stop.set()
    for thread in clients:
        thread.join(timeout=10)
    elapsed = time.monotonic() - started
    failed = [status for status, _, _ in results if status != 200]
    latencies = sorted(answered_at - sent for _, sent, answered_at in results)
    switch_times = [ended - began for began, ended in switches]
    print(
        f"\nlocal switchovers: {len(results)} requests at {len(results) / elapsed:.0f}/s, failed {len(failed)}, "
        f"switch time median {statistics.median(switch_times) * 1000:.1f} ms max {max(switch_times) * 1000:.1f} ms, "
        f"p95 latency {latencies[int(0.95 * len(latencies))] * 1000:.1f} ms"
    )
    # Every switch happened under traffic: some request was on its way while the route changed.
    # (Throughput is a benchmark's business, not a test's: this machine is shared.)
    quiet = [i for i, (began, ended) in enumerate(switches) if not any(sent < ended and answered_at > began for _, sent, answered_at in results)]
    assert quiet == [], f"no request was in flight during switches {quiet}"
    assert failed == []


def test_a_killed_router_comes_back_on_the_live_colour_and_stop_all_ends_every_process(backend, models):
    import os
    import signal

    live = backend.status().live
    assert live is not None
    state = json.loads(backend.state_file.read_text())
    os.killpg(state["proxy"]["pgid"], signal.SIGKILL)
    wait_for(lambda: not group_alive(state["proxy"]["pgid"]), "the killed router's exit", timeout=10)
    assert predict(backend.live_url())[0] == 502  # the front is up, the router is not
    backend.ensure_proxy()
    assert backend.proxy_color() is live
    assert predict(backend.live_url())[0] == 200

    state = json.loads(backend.state_file.read_text())
    groups = [state["proxy"]["pgid"], state["front"]["pgid"], *(entry["pgid"] for entry in state["colors"].values())]
    assert sorted(backend.stop_all()) == sorted(["toy-caddy", "toy-caddy-front", "toy-blue", "toy-green"])
    assert [pgid for pgid in groups if group_alive(pgid)] == []


def test_a_process_started_but_never_recorded_is_ended_by_the_next_deploy_and_by_stop(tmp_path, models):
    """A deploy killed between starting the model server and writing the state: the server wrote its own pid file."""
    ports = LocalPorts(live=free_port(), blue=free_port(), green=free_port())
    serving = LocalServingBackend(model="toy", state_dir=tmp_path / "serving", ports=ports)
    try:
        command = [sys.executable, "-m", "http.server", str(ports.blue), "--bind", "127.0.0.1"]
        stray = serving._spawn("blue", command)  # started, as the killed try did, and never recorded
        wait_for(serving._pid_file("blue").exists, "the stray server's pid file", timeout=10)
        assert serving._load()["colors"] == {}
        assert serving.deploy(Color.BLUE, "1", models["1"], estimator_kind="logistic_regression") is True
        assert stray.wait(timeout=30) is not None, "the next deploy must end the unrecorded server"
        assert serving.wait_ready(Color.BLUE, timeout=120).ready  # and its port was free for the new one

        other = serving._spawn("green", command[:3] + [str(ports.green), "--bind", "127.0.0.1"])
        wait_for(serving._pid_file("green").exists, "the second stray server's pid file", timeout=10)
        assert "toy-green" in serving.stop_all()
        assert other.wait(timeout=30) is not None, "stop must end the unrecorded server too"
    finally:
        serving.stop_all()


def test_a_router_a_killed_switch_started_is_adopted_even_when_it_answers_before_its_pid_file_was_read(tmp_path, monkeypatch):
    """Found by the kill test (switch killed at 0.13 s): the re-run looked for the stray router's pid file before
    the router's wrapper had written it, then found the router answering, used it, and never recorded it."""
    ports = LocalPorts(live=free_port(), blue=free_port(), green=free_port())
    serving = LocalServingBackend(model="toy", state_dir=tmp_path / "serving", ports=ports)
    try:
        stray = serving._start_caddy("caddy", serving._router_config(None))  # started by the killed try, never recorded
        wait_for(lambda: serving.router_socket.exists(), "the stray router", timeout=30)
        real, calls = serving._adopt_unrecorded_proxies, []

        def too_early():  # the first look comes before the pid file exists
            calls.append(1)
            if len(calls) > 1:
                real()

        monkeypatch.setattr(serving, "_adopt_unrecorded_proxies", too_early)
        serving.ensure_proxy()
        assert serving._load()["proxy"]["pgid"] == stray.pid
        assert "toy-caddy" in serving.stop_all()
        assert stray.wait(timeout=30) is not None
    finally:
        serving.stop_all()


def test_a_second_front_beside_the_recorded_one_is_ended(tmp_path):
    """Also found by the kill test: Caddy listens with SO_REUSEPORT, so a front a killed switch started ran beside
    the re-run's, its pid file overwritten. Processes of ours that the state does not record are ended."""
    ports = LocalPorts(live=free_port(), blue=free_port(), green=free_port())
    serving = LocalServingBackend(model="toy", state_dir=tmp_path / "serving", ports=ports)
    try:
        first = serving._start_caddy("caddy-front", serving._front_config())
        wait_for(lambda: serving._spawned_group("caddy-front") == first.pid, "the first front's pid file", timeout=30)
        second = serving._start_caddy("caddy-front", serving._front_config())  # its pid file replaces the first's
        wait_for(lambda: serving._spawned_group("caddy-front") == second.pid, "the second front's pid file", timeout=30)
        serving.ensure_proxy()
        assert serving._load()["front"]["pgid"] == second.pid
        assert first.wait(timeout=30) is not None, "the unrecorded front must be ended"
        assert second.poll() is None
    finally:
        serving.stop_all()


def test_a_front_an_older_version_started_is_replaced_so_the_live_url_reaches_the_router(tmp_path):
    """An upgrade moved the router's sockets into a private folder; a front still dialling the old path would answer 502 for ever."""
    ports = LocalPorts(live=free_port(), blue=free_port(), green=free_port())
    serving = LocalServingBackend(model="toy", state_dir=tmp_path / "serving", ports=ports)
    try:
        old_config = serving._front_config()
        old_config["apps"]["http"]["servers"]["live"]["routes"][0]["handle"][0]["upstreams"] = [{"dial": f"unix/{serving.state_dir / 'toy-router.sock'}"}]
        old = serving._start_caddy("caddy-front", old_config)
        state = serving._load()
        state["front"] = {"pid": old.pid, "pgid": old.pid}
        serving._save(state)
        wait_for(lambda: predict(serving.live_url())[0] == 502, "the old front answering")
        serving.ensure_proxy()
        assert old.wait(timeout=30) is not None, "the old front must be ended"
        status, _, _ = predict(serving.live_url())
        assert status == 503, "the router answers through the new front: no colour is live yet"
    finally:
        serving.stop_all()


def test_a_stale_pid_file_never_stops_a_process_that_is_not_ours(tmp_path):
    import subprocess

    serving = LocalServingBackend(model="toy", state_dir=tmp_path / "serving", ports=LocalPorts(live=free_port(), blue=free_port(), green=free_port()))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        serving._pid_file("blue").parent.mkdir(parents=True)
        serving._pid_file("blue").write_text(str(bystander.pid))  # the pid was reused by someone else
        serving.stop_all()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_two_models_side_by_side_released_at_once_and_restored_after_a_stop(tmp_path, models):
    """Each model has its own ports, router and state: concurrent releases never touch each other's routes, and after
    everything was stopped (``make stop``) each live URL serves its own recorded version again (``make up``)."""
    from concurrent.futures import ThreadPoolExecutor

    state_dir = tmp_path / "serving"
    alpha = LocalServingBackend(model="alpha", state_dir=state_dir, ports=LocalPorts(live=free_port(), blue=free_port(), green=free_port()))
    beta = LocalServingBackend(model="beta", state_dir=state_dir, ports=LocalPorts(live=free_port(), blue=free_port(), green=free_port()))
    expected = {"alpha": ("1", [0, 1]), "beta": ("2", [1, 0])}

    def release(backend: LocalServingBackend) -> SwitchOutcome:
        version = expected[backend.model][0]
        backend.deploy(Color.GREEN, version, models[version], estimator_kind="logistic_regression")
        backend.wait_ready(Color.GREEN, timeout=120)
        return backend.switch(Color.GREEN)

    try:
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(release, (alpha, beta))) == [SwitchOutcome.SWITCHED, SwitchOutcome.SWITCHED]
        for backend in (alpha, beta):
            status, _, body = predict(backend.live_url())
            assert (status, body["predictions"]) == (200, expected[backend.model][1])
            assert backend.status().live_version == expected[backend.model][0]

        for backend in (alpha, beta):
            backend.stop_all()
            assert predict(backend.live_url())[0] == 0, "nothing answers once stopped"
        for backend in (alpha, beta):
            restored = LocalServingBackend(model=backend.model, state_dir=state_dir, ports=backend.ports)
            ready = restored.restore_live(estimator_kind="logistic_regression", timeout=120)
            assert (ready.color, ready.version) == (Color.GREEN, expected[backend.model][0])
            status, _, body = predict(restored.live_url())
            assert (status, body["predictions"]) == (200, expected[backend.model][1])
            assert restored.status().colors[Color.BLUE].detail == "not running"  # the idle colour waits for the next release
    finally:
        alpha.stop_all()
        beta.stop_all()


def test_nothing_to_restore_when_nothing_was_live(tmp_path):
    serving = LocalServingBackend(model="toy", state_dir=tmp_path / "serving", ports=LocalPorts(live=free_port(), blue=free_port(), green=free_port()))
    assert serving.restore_live(estimator_kind="logistic_regression", timeout=5) is None
    assert not serving.state_file.exists()
