"""What a container process receives: Kubernetes' ``$(VAR)`` expansion of command, args and env values.

A port of the kubelet's rules (``third_party/forked/golang/expansion/expand.go`` and
``kubelet_pods.go`` in kubernetes/kubernetes), byte for byte as Go does it:

- ``$(NAME)`` becomes the value of ``NAME`` when the container defines it, and stays literally
  ``$(NAME)`` when it does not; an unclosed ``$(`` stays as it is;
- ``$$`` becomes ``$``;
- ``$`` before any other byte stays, with that byte (which Go turns into the rune of that value);
- env values are expanded in order, each seeing only the variables defined before it; command
  and args see every variable of the container. ``valueFrom`` values (Secrets) are not expanded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _read_variable_name(rest: bytes) -> tuple[bytes, bool, int]:
    if rest[:1] == b"$":
        return b"$", False, 1
    if rest[:1] == b"(":
        closer = rest.find(b")", 1)
        if closer != -1:
            return rest[1:closer], True, closer + 1
        return b"$(", False, 1
    return b"$" + chr(rest[0]).encode(), False, 1


def expand(text: str, variables: Mapping[str, str]) -> str:
    """``text`` after Kubernetes' expansion against ``variables``."""
    data = text.encode()
    out = bytearray()
    checkpoint = cursor = 0
    while cursor < len(data):
        if data[cursor : cursor + 1] == b"$" and cursor + 1 < len(data):
            out += data[checkpoint:cursor]
            read, is_variable, advance = _read_variable_name(data[cursor + 1 :])
            if is_variable:
                name = read.decode(errors="surrogateescape")
                out += variables[name].encode() if name in variables else b"$(" + read + b")"
            else:
                out += read
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out += data[checkpoint:]
    return out.decode(errors="surrogateescape")


def container_process(container: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """The argv and environment the kubelet gives ``container`` (the API's JSON form).

    :param secrets: the value of each ``valueFrom`` variable, by variable name.
    """
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "valueFrom" in entry:
            env[entry["name"]] = secrets[entry["name"]]
        else:
            env[entry["name"]] = expand(entry.get("value") or "", dict(env))
    argv = [expand(part, env) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
    return {"argv": argv, "env": env}
