"""A mutual-exclusion lock kept in the MLflow registry itself.

MLflow aliases are last-writer-wins, so two promotions that both read the same champion
would both move it. Airflow's one-slot pool serialises promotions inside one Airflow;
this lock also covers a second deployment, a backfill, or a person with a script.

Acquiring creates a registered model named ``<model>.promotion-lock``. MLflow's store
enforces unique names, so exactly one creator wins: an atomic test-and-set with no
extra infrastructure. The holder and an expiry are tags on it. Releasing deletes it.

A holder that died (a killed task) leaves its lock behind. It is broken at once when the
holder is provably gone: an earlier try of the same task instance (Airflow runs one try
at a time), or a process of this host that no longer exists. Otherwise it is broken
after its expiry.
"""

from __future__ import annotations

import os
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlops_airflow.exceptions import MlopsError

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow import MlflowHook

LOCK_SUFFIX = ".promotion-lock"
TAG_OWNER = "mlops.lock.owner"
TAG_EXPIRES = "mlops.lock.expires_at"


class RegistryLockTimeoutError(MlopsError):
    """Another promotion held the lock for longer than we were willing to wait."""


def lock_name(registered_model_name: str) -> str:
    return f"{registered_model_name}{LOCK_SUFFIX}"


_OWNER = re.compile(r"^(?P<task>.+)/try(?P<try>\d+)@(?P<host>[^:]+):(?P<pid>\d+)$")


def process_namespace() -> str:
    """This host and process-id namespace: pids compare only within one (containers sharing a host name do not)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = "-"
    return f"{socket.gethostname()}~{namespace}"


def lock_owner(task: str, try_number: int, *, host: str | None = None, pid: int | None = None) -> str:
    """``<dag_id>/<run_id>/<task_id>/try<n>@<host>~<pid namespace>:<pid>``: who holds a lock, precisely enough to tell when it died."""
    return f"{task}/try{try_number}@{host or process_namespace()}:{pid or os.getpid()}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def dead_holder_reason(holder: str | None, owner: str, *, process_exists: Callable[[int], bool] = _process_exists) -> str | None:
    """Why the lock's ``holder`` is certainly gone, seen by ``owner``; ``None`` when it may be alive."""
    theirs, ours = _OWNER.match(holder or ""), _OWNER.match(owner)
    if theirs is None or ours is None:
        return None
    if theirs["task"] == ours["task"] and int(theirs["try"]) < int(ours["try"]):
        return f"try {theirs['try']} of the same task ended (this is try {ours['try']})"
    if theirs["host"] == ours["host"] and theirs["pid"] != ours["pid"] and not process_exists(int(theirs["pid"])):
        return f"process {theirs['pid']} on {theirs['host']} no longer exists"
    return None


@contextmanager
def registry_lock(
    hook: MlflowHook,
    registered_model_name: str,
    *,
    owner: str,
    timeout: float = 600.0,
    ttl: float = 900.0,
    poll: float = 0.2,
    clock: Callable[[], float] = time.time,
    log: Callable[..., None] | None = None,
) -> Iterator[None]:
    """
    Hold the promotion lock of one registered model for the block.

    :param owner: who holds it (shown to whoever waits); unique per task try.
    :param timeout: seconds to wait for a held lock before a retryable error.
    :param ttl: seconds after which a lock is presumed abandoned and may be broken.
    """
    name = lock_name(registered_model_name)
    deadline = time.monotonic() + timeout
    while True:
        tags = {TAG_OWNER: owner, TAG_EXPIRES: f"{clock() + ttl:.3f}"}
        if hook.create_registered_model(name, tags=tags, description=f"Held while {registered_model_name}'s champion moves."):
            break
        holder = hook.get_registered_model_tags(name)
        if holder is None:
            continue  # released between our attempt and our look: try again at once
        expires = float(holder.get(TAG_EXPIRES, "0") or 0)
        abandoned = "it expired" if expires < clock() else dead_holder_reason(holder.get(TAG_OWNER), owner)
        if abandoned:
            if log:
                log("Breaking the abandoned promotion lock of %s held by %s: %s", registered_model_name, holder.get(TAG_OWNER), abandoned)
            _delete_if_held_by(hook, name, holder.get(TAG_OWNER))
            continue
        if time.monotonic() >= deadline:
            raise RegistryLockTimeoutError(f"the promotion lock of {registered_model_name} is held by {holder.get(TAG_OWNER)!r}; waited {timeout:.0f} s")
        time.sleep(poll * (0.5 + random.random()))  # noqa: S311 - jitter, not cryptography
    try:
        yield
    finally:
        _delete_if_held_by(hook, name, owner)


def _delete_if_held_by(hook: MlflowHook, name: str, owner: str | None) -> None:
    """Delete the lock only while ``owner`` still holds it: never release someone else's lock."""
    holder = hook.get_registered_model_tags(name)
    if holder is not None and holder.get(TAG_OWNER) == owner:
        hook.delete_registered_model(name)
