"""CaddyProxy: the router's private Unix sockets, the router and front configurations, the live colour read back from the router, the live port guard."""

from __future__ import annotations

import json
import socketserver
import tempfile
import threading

import pytest
from fake_http import JsonHandler

from mlops_airflow.serving.base import Color
from mlops_airflow.serving.local import LocalServingBackend
from mlops_airflow.serving.local_ports import LocalPorts
from mlops_airflow.serving.local_proxy import HANDLER, ROUTE

PORTS = LocalPorts(live=9600, blue=9601, green=9602)


class _RouterAdmin(JsonHandler):
    """The router's admin API as far as proxy_color reads it: the live route's handler (upstreams, and weights when split)."""

    upstreams: object
    weights: object = None

    def address_string(self) -> str:
        return "unix"

    def do_GET(self) -> None:
        if self.path == HANDLER:
            handler = {"handler": "reverse_proxy", "upstreams": self.upstreams} if self.upstreams is not None else {"handler": "static_response"}
            if self.weights is not None:
                handler["load_balancing"] = {"selection_policy": {"policy": "weighted_round_robin", "weights": self.weights}}
            self.reply(200, json.dumps(handler).encode())
        else:
            self.reply(404, b'{"error": "unknown path"}')


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


@pytest.fixture
def router_admin(tmp_path):
    """Serve ``upstreams`` on the backend's admin socket; yields (backend, start)."""
    backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
    servers: list[_UnixHTTPServer] = []

    def start(upstreams: object, weights: object = None) -> None:
        backend._private_socket_dir()
        handler = type("_Handler", (_RouterAdmin,), {"upstreams": upstreams, "weights": weights})
        server = _UnixHTTPServer(str(backend.admin_socket), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)

    yield backend, start
    for server in servers:
        server.shutdown()
        server.server_close()
    backend.admin_socket.unlink(missing_ok=True)
    if not backend.socket_dir.is_relative_to(tmp_path):  # the short folder in /tmp a long tmp_path gets
        backend.socket_dir.rmdir()


class TestSocketDir:
    def test_a_short_state_dir_keeps_the_sockets_beside_the_state(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path)
        assert (backend.router_socket, backend.admin_socket) == (tmp_path / "sockets" / "churn-router.sock", tmp_path / "sockets" / "churn-admin.sock")

    def test_a_long_state_dir_gets_one_short_socket_whatever_each_process_tmpdir(self, tmp_path, monkeypatch):
        state = tmp_path / ("deep-" * 20) / "serving"
        paths = set()
        for tmpdir in (tmp_path / "worker1" / "tmp", tmp_path / "worker2" / "tmp"):  # each Celery worker has its own
            tmpdir.mkdir(parents=True)
            monkeypatch.setenv("TMPDIR", str(tmpdir))
            monkeypatch.setattr(tempfile, "tempdir", None)  # as a fresh process would read it
            paths.add(LocalServingBackend(model="churn", state_dir=state).router_socket)
        (path,) = paths
        assert len(str(path)) <= 100
        assert path != LocalServingBackend(model="churn", state_dir=tmp_path / ("other-" * 20)).router_socket

    @pytest.mark.parametrize("deep", [False, True], ids=["in-state-dir", "short-folder-in-tmp"])
    def test_the_socket_folder_is_private_and_a_foreign_one_is_refused(self, tmp_path, deep):
        """The router's admin API re-routes live traffic: only this user may reach its socket."""
        from mlops_airflow.exceptions import MlopsError

        state = tmp_path / ("deep-" * 20 if deep else "s") / "serving"
        backend = LocalServingBackend(model="churn", state_dir=state)
        folder = backend._private_socket_dir()
        assert folder == backend.admin_socket.parent == backend.router_socket.parent
        assert folder.stat().st_mode & 0o777 == 0o700
        try:
            folder.chmod(0o755)  # someone opened it up, or made it before us
            with pytest.raises(MlopsError, match="only we can enter"):
                backend._private_socket_dir()
        finally:
            folder.chmod(0o700)
            if deep:
                folder.rmdir()


class TestConfigs:
    def test_the_router_admin_api_listens_on_a_private_unix_socket_only(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path)
        assert backend._router_config(None)["admin"] == {"listen": f"unix/{backend.admin_socket}|0600", "config": {"persist": False}}
        assert backend._front_config()["admin"] == {"disabled": True}

    @pytest.mark.parametrize("color", [pytest.param(Color.BLUE, id="blue"), pytest.param(Color.GREEN, id="green")])
    def test_the_router_proxies_to_the_live_colour_only(self, tmp_path, color):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        server = backend._router_config(color)["apps"]["http"]["servers"]["router"]
        assert server["listen"] == [f"unix/{backend.router_socket}"]
        (route,) = server["routes"]
        (handler,) = route["handle"]
        assert handler["upstreams"] == [{"dial": f"127.0.0.1:{PORTS.of(color)}"}]
        assert "load_balancing" not in handler

    def test_every_request_the_router_forwards_is_marked_live(self, tmp_path):
        """The inference log tells live traffic from the smoke test's and a replay's, which reach a colour's own port."""
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        for config in (backend._router_config(Color.BLUE), backend._router_config(Color.BLUE, {Color.BLUE: 90, Color.GREEN: 10})):
            (handler,) = config["apps"]["http"]["servers"]["router"]["routes"][0]["handle"]
            assert handler["headers"] == {"request": {"set": {"x-mlops-route": ["live"]}}}

    def test_a_split_lists_the_larger_share_first_with_its_weight(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        config = backend._router_config(Color.BLUE, {Color.GREEN: 10, Color.BLUE: 90})
        (handler,) = config["apps"]["http"]["servers"]["router"]["routes"][0]["handle"]
        assert handler["upstreams"] == [{"dial": "127.0.0.1:9601"}, {"dial": "127.0.0.1:9602"}]
        # Reduced: Caddy serves each weight's worth of requests in a row (9 then 1 interleaves; 90 then 10 would not).
        assert handler["load_balancing"] == {"selection_policy": {"policy": "weighted_round_robin", "weights": [9, 1]}}

    def test_an_even_split_lists_the_live_colour_first(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        for live in Color:
            config = backend._router_config(live, {Color.BLUE: 50, Color.GREEN: 50})
            (handler,) = config["apps"]["http"]["servers"]["router"]["routes"][0]["handle"]
            assert handler["upstreams"][0] == {"dial": f"127.0.0.1:{PORTS.of(live)}"}

    def test_with_nothing_live_the_router_answers_503(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        (route,) = backend._router_config(None)["apps"]["http"]["servers"]["router"]["routes"]
        assert route == {"handle": [{"handler": "static_response", "status_code": 503, "body": "churn: no colour is live yet\n"}]}

    def test_the_front_listens_on_the_live_port_and_dials_the_router_socket(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        server = backend._front_config()["apps"]["http"]["servers"]["live"]
        assert server["listen"] == ["127.0.0.1:9600"]
        (route,) = server["routes"]
        (proxy,) = route["handle"]
        assert proxy["upstreams"] == [{"dial": f"unix/{backend.router_socket}"}]
        assert proxy["transport"]["keep_alive"] == {"enabled": False}  # a fresh connection per request survives a router reload
        assert proxy["load_balancing"]["retry_match"] == [{"method": ["GET", "HEAD", "POST"]}]

    def test_the_front_does_not_change_when_the_live_colour_does(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        front = backend._front_config()
        assert backend._router_config(Color.BLUE) != backend._router_config(Color.GREEN)
        assert "9601" not in json.dumps(front)
        assert "9602" not in json.dumps(front)


class TestProxyColor:
    @pytest.mark.parametrize(
        ("upstreams", "color"),
        [
            pytest.param([{"dial": "127.0.0.1:9601"}], Color.BLUE, id="blue"),
            pytest.param([{"dial": "127.0.0.1:9602"}], Color.GREEN, id="green"),
            pytest.param([{"dial": "127.0.0.1:9999"}], None, id="someone-elses-port"),
            pytest.param([{"dial": "10.0.0.1:9601"}], None, id="another-host"),
            pytest.param([], None, id="no-upstream"),
            pytest.param(None, None, id="nothing-live-static-route"),
        ],
    )
    def test_read_from_the_router(self, router_admin, upstreams, color):
        backend, start = router_admin
        start(upstreams)
        assert backend.proxy_color() is color

    @pytest.mark.parametrize(
        ("weights", "live", "split"),
        [
            pytest.param([90, 10], Color.BLUE, {Color.BLUE: 90, Color.GREEN: 10}, id="canary-10"),
            pytest.param([10, 90], Color.GREEN, {Color.BLUE: 10, Color.GREEN: 90}, id="mostly-green"),
            pytest.param([50, 50], Color.BLUE, {Color.BLUE: 50, Color.GREEN: 50}, id="even-first-listed"),
            pytest.param([1, 2, 3], Color.BLUE, {}, id="weights-not-matching-upstreams-mean-the-first"),
        ],
    )
    def test_a_split_is_read_from_the_router(self, router_admin, weights, live, split):
        backend, start = router_admin
        start([{"dial": "127.0.0.1:9601"}, {"dial": "127.0.0.1:9602"}], weights)
        assert backend.proxy_color() is live
        assert backend.traffic_weights() == split

    def test_a_router_that_is_down_routes_nowhere(self, tmp_path):
        backend = LocalServingBackend(model="churn", state_dir=tmp_path, ports=PORTS)
        assert backend._admin("GET", ROUTE) == (0, b"")
        assert backend.proxy_color() is None


class TestEnsureProxy:
    def test_a_live_port_held_by_another_model_or_program_is_refused_not_shared(self, tmp_path):
        """Another model's front on our live port would keep answering our clients: no router of ours is started behind it."""
        import socket

        from helpers import free_port

        from mlops_airflow.serving.local_ports import LocalPorts
        from mlops_airflow.serving.local_proxy import ProxyError

        with socket.socket() as stranger:
            stranger.bind(("127.0.0.1", 0))
            stranger.listen()
            taken = stranger.getsockname()[1]
            backend = LocalServingBackend(model="fraud", state_dir=tmp_path, ports=LocalPorts(live=taken, blue=free_port(), green=free_port()))
            backend._router_config = lambda color: pytest.fail("a router was configured behind a port that is not ours")
            backend._admin = lambda *args, **kwargs: (200, b"{}")  # the router answers: only the front is in question
            with pytest.raises(
                ProxyError, match=f"refusing to serve fraud on 127.0.0.1:{taken}: the port is taken .* give fraud its own serving.local.live_port"
            ):
                backend.ensure_proxy(timeout=5)
