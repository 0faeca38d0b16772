"""A mutual-exclusion lock kept in the MLflow registry itself.

MLflow aliases are last-writer-wins, so two promotions that both read the same champion
would both move it. Airflow's one-slot pool serialises promotions inside one Airflow;
this lock also covers a second deployment, a backfill, or a person with a script.

Acquiring creates a registered model named ``<model>.promotion-lock``. MLflow's store
enforces unique names, so exactly one creator wins: an atomic test-and-set with no
extra infrastructure. The holder and an expiry are tags on it; a lock whose holder
died is broken after its expiry. Releasing deletes it.
"""

from __future__ import annotations

import random
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
        if expires < clock():
            if log:
                log("Breaking the abandoned promotion lock of %s held by %s", registered_model_name, holder.get(TAG_OWNER))
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
