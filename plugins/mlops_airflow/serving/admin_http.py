"""HTTP to a Caddy admin API, over TCP (``http://host:port``) or a Unix socket (``unix:/path``).

A Unix socket is how the routers' admin APIs are kept from other users and other
containers: whoever can reach an admin API can re-route a model's live traffic, and it
has no authentication of its own. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any

UNIX_PREFIX = "unix:"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def admin_request(address: str, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """``method path`` on the admin API at ``address``; (status, body) for any answer, ``OSError`` when none comes."""
    if address.startswith(UNIX_PREFIX):
        connection: http.client.HTTPConnection = _UnixConnection(address[len(UNIX_PREFIX) :], timeout)
    else:
        parsed = urllib.parse.urlsplit(address)
        kind = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        connection = kind(parsed.hostname or "", parsed.port, timeout=timeout)
        # Caddy checks the Host of an admin request against its listen address.
        host = parsed.netloc
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if not address.startswith(UNIX_PREFIX):
            headers["Host"] = host
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as err:
        raise OSError(f"{method} {path} at {address}: {err}") from err
    finally:
        connection.close()
