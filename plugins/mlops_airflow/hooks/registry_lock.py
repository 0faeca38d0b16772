"""A mutual-exclusion lock kept in the MLflow registry itself.

MLflow aliases are last-writer-wins, so two promotions that both read the same champion
would both move it. Airflow's one-slot pool serialises promotions inside one Airflow;
this lock also covers a second deployment, a backfill, or a person with a script.

Acquiring creates a registered model named ``<model>.promotion-lock``. MLflow's store
enforces unique names, so exactly one creator wins: an atomic test-and-set with no
extra infrastructure. The holder, a random nonce and a seal are tags on it. Releasing
deletes it. Every alias move holds it: promotions, the manual rollback, a failed release's
rollback.

The seal is ``<expiry>:<HMAC>`` over the lock's name, holder, nonce and expiry, keyed by the
MLflow connection's lock secret (``extra.lock_secret``, stretched; never the password, which a
readable seal would let every MLflow user test guesses of).
Any MLflow user can create a model of that name, with any tags; only a holder with the
secret can seal it. A lock without a valid seal is foreign: it is reported (it may not even
be deletable by the pipeline), never waited on and never broken. A copied seal is good
only until the expiry it seals.

While held, a heartbeat thread renews the expiry every ``ttl / 3`` seconds, so long work
inside never outlives the TTL. A holder that died (a killed task) leaves its lock behind,
no longer renewed. It is broken at once when the holder is provably gone: an earlier try of
the same task instance (Airflow runs one try at a time), or a process of this host that no
longer exists. Otherwise it is broken after its expiry.
"""

from __future__ import annotations

import hmac
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.exceptions import MlopsError

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow import MlflowHook

LOCK_SUFFIX = ".promotion-lock"
TAG_OWNER = "mlops.lock.owner"
TAG_EXPIRES = "mlops.lock.expires_at"  # for people; the expiry that counts is the sealed one
TAG_NONCE = "mlops.lock.nonce"
TAG_SEAL = "mlops.lock.seal"


def seal_tag(nonce: str) -> str:
    """Each holder's seal has a tag of its own: a renewal that races a break-and-retake writes beside the new holder's seal, never over it."""
    return f"{TAG_SEAL}.{nonce}"


_NONCE = re.compile(r"^[0-9a-f]{32}$")
_SEAL = re.compile(r"^(?P<expires>\d+\.\d{3}):(?P<mac>[0-9a-f]{64})$")


class RegistryLockTimeoutError(MlopsError):
    """Another promotion held the lock for longer than we were willing to wait."""


class RegistryLockLostError(MlopsError):
    """Our lock expired or was taken over while we held it: what it protected must not go on."""


class ForeignRegistryLockError(AirflowFailException):
    """The lock model exists but this pipeline did not seal it: a person must remove it (no retry)."""


def lock_name(registered_model_name: str) -> str:
    return f"{registered_model_name}{LOCK_SUFFIX}"


def _mac(secret: str, name: str, owner: str, nonce: str, expires: str) -> str:
    from mlops_airflow.core.seals import mac

    return mac(secret, "registry_lock", name, owner, nonce, expires)


def seal(name: str, owner: str, nonce: str, expires: float, secret: str) -> str:
    """``<expires>:<HMAC>`` of one lock model ``name`` held by ``owner`` until ``expires``."""
    stamp = f"{expires:.3f}"
    return f"{stamp}:{_mac(secret, name, owner, nonce, stamp)}"


def lock_tags(name: str, owner: str, *, expires: float, secret: str, nonce: str | None = None) -> dict[str, str]:
    """The tags of a lock model ``name`` that ``owner`` holds until ``expires``."""
    nonce = nonce or secrets.token_hex(16)
    return {TAG_OWNER: owner, TAG_NONCE: nonce, seal_tag(nonce): seal(name, owner, nonce, expires, secret), TAG_EXPIRES: f"{expires:.3f}"}


def sealed_expiry(name: str, tags: dict[str, str], secret: str) -> tuple[float | None, str | None]:
    """``(expiry, None)`` for a lock this pipeline sealed; ``(None, why it is foreign)`` otherwise."""
    nonce = tags.get(TAG_NONCE) or ""
    found = _SEAL.match(tags.get(seal_tag(nonce)) or "") if _NONCE.match(nonce) else None
    if found is None:
        return None, f"it has no {TAG_NONCE!r} and {TAG_SEAL!r} tags in this pipeline's format"
    if not hmac.compare_digest(found["mac"], _mac(secret, name, tags.get(TAG_OWNER) or "", nonce, found["expires"])):
        return None, "its seal does not verify with this pipeline's lock secret (made by someone else, or before the secret changed)"
    return float(found["expires"]), None


def foreign_lock_error(registered_model_name: str, name: str, tags: dict[str, str], why: str) -> ForeignRegistryLockError:
    claimed = (tags.get(TAG_OWNER) or "")[:200] or "nobody"
    return ForeignRegistryLockError(
        f"the promotion lock of {registered_model_name}, registered model {name!r} in the MLflow registry, was not created by this pipeline: "
        f"{why}. Its owner tag claims {claimed!r}; MLflow records who created it as the user with MANAGE permission on it. "
        f"No alias of {registered_model_name} moves while it exists. Ask an MLflow admin to check it and delete it "
        f"(MlflowClient().delete_registered_model({name!r}), or the model's page in the MLflow UI), then clear this task."
    )


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


class RegistryLease:
    """A held lock, renewed by a heartbeat thread until the block ends.

    :meth:`ensure_held` renews at once and raises :class:`RegistryLockLostError` when the lock
    is gone or someone else's: call it right before a move the lock must protect.
    """

    def __init__(
        self,
        hook: MlflowHook,
        registered_model_name: str,
        *,
        owner: str,
        nonce: str,
        secret: str,
        ttl: float,
        every: float,
        clock: Callable[[], float],
        log: Callable[..., None] | None,
    ) -> None:
        self.hook, self.registered_model_name, self.name = hook, registered_model_name, lock_name(registered_model_name)
        self.owner, self.nonce, self._secret = owner, nonce, secret
        self.ttl, self.every, self.clock, self.log = ttl, every, clock, log
        self.lost: str | None = None
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{registered_model_name}", daemon=True)

    def ensure_held(self) -> None:
        """Renew now, or raise: the heartbeat's last word may be minutes old, or its renewals may have failed past the TTL."""
        if self.lost or not self.renew():
            raise RegistryLockLostError(f"the promotion lock of {self.registered_model_name} was lost while held: {self.lost}")

    def renew(self) -> bool:
        """Push the expiry ``ttl`` ahead while the lock is still ours; ``False`` (and :attr:`lost`) once it is not."""
        holder = self.hook.get_registered_model_tags(self.name)
        if holder is None or holder.get(TAG_NONCE) != self.nonce:
            self.lost = "it was deleted" if holder is None else f"it is now held by {holder.get(TAG_OWNER)!r}"
            return False
        expires = self.clock() + self.ttl
        # One tag write carries the new expiry with its seal: a reader never sees the two apart.
        # Read, then write: a holder that breaks this lock and takes it in between gets our seal
        # beside its own (its nonce names its seal tag), and our stale expiry tag, which counts for nobody.
        self.hook.set_registered_model_tag(self.name, seal_tag(self.nonce), seal(self.name, self.owner, self.nonce, expires, self._secret))
        self.hook.set_registered_model_tag(self.name, TAG_EXPIRES, f"{expires:.3f}")
        self.renewals += 1
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.renew():
                    if self.log:
                        self.log("The promotion lock of %s was lost while held: %s", self.registered_model_name, self.lost)
                    return
            except Exception as err:  # a blip: the TTL leaves room for the next beats
                if self.log:
                    self.log("Could not renew the promotion lock of %s (will try again): %s", self.registered_model_name, err)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def registry_lock(
    hook: MlflowHook,
    registered_model_name: str,
    *,
    owner: str,
    timeout: float = 600.0,
    ttl: float = 900.0,
    poll: float = 0.2,
    renew_every: float | None = None,
    secret: str | None = None,
    clock: Callable[[], float] = time.time,
    log: Callable[..., None] | None = None,
) -> Iterator[RegistryLease]:
    """
    Hold the promotion lock of one registered model for the block, renewed while it runs.

    :param owner: who holds it (shown to whoever waits); unique per task try.
    :param timeout: seconds to wait for a held lock before a retryable error.
    :param ttl: seconds after which a lock no longer renewed is presumed abandoned and may be broken.
    :param renew_every: seconds between renewals; ``ttl / 3`` when not given.
    :param secret: the key of the seal; the hook's :meth:`get_lock_secret` when not given.
    :raises ForeignRegistryLockError: the lock model exists and this pipeline did not seal it.
    """
    name = lock_name(registered_model_name)
    secret = hook.get_lock_secret() if secret is None else secret
    deadline = time.monotonic() + timeout
    while True:
        tags = lock_tags(name, owner, expires=clock() + ttl, secret=secret)
        if hook.create_registered_model(name, tags=tags, description=f"Held while {registered_model_name}'s champion moves."):
            break
        holder = hook.get_registered_model_tags(name)
        if holder is None:
            continue  # released between our attempt and our look: try again at once
        expires, foreign = sealed_expiry(name, holder, secret)
        if foreign:
            if _reads_the_same(hook, name, holder, reads=FOREIGN_CONFIRMING_READS, pause=min(poll, 0.5)):
                raise foreign_lock_error(registered_model_name, name, holder, foreign)
            continue  # a torn read of a lock being created or deleted beside us
        abandoned = "it expired" if expires < clock() else dead_holder_reason(holder.get(TAG_OWNER), owner)
        if abandoned:
            if log:
                log("Breaking the abandoned promotion lock of %s held by %s: %s", registered_model_name, holder.get(TAG_OWNER), abandoned)
            _delete_if_held_by(hook, name, holder.get(TAG_NONCE))
            continue
        if time.monotonic() >= deadline:
            raise RegistryLockTimeoutError(f"the promotion lock of {registered_model_name} is held by {holder.get(TAG_OWNER)!r}; waited {timeout:.0f} s")
        time.sleep(poll * (0.5 + random.random()))  # noqa: S311 - jitter, not cryptography
    lease = RegistryLease(
        hook, registered_model_name, owner=owner, nonce=tags[TAG_NONCE], secret=secret, ttl=ttl, every=renew_every or ttl / 3, clock=clock, log=log
    )
    lease.start()
    try:
        yield lease
    finally:
        lease.stop()
        if lease.lost and log:
            log("The promotion lock of %s was lost while held (%s): what ran inside was not protected", registered_model_name, lease.lost)
        _delete_if_held_by(hook, name, lease.nonce)


# MLflow's server can answer a read of a lock that is being created or deleted with the model
# and none of its tags (seen under the concurrency test: a legitimate lock read as "owner
# nobody, no seal"). A lock is called foreign only when this many reads agree.
FOREIGN_CONFIRMING_READS = 3


def _reads_the_same(hook: MlflowHook, name: str, seen: dict[str, str], *, reads: int, pause: float) -> bool:
    """Whether ``reads - 1`` more reads of the lock, ``pause`` apart, find exactly ``seen``."""
    for _ in range(reads - 1):
        time.sleep(pause)
        if hook.get_registered_model_tags(name) != seen:
            return False
    return True


def _delete_if_held_by(hook: MlflowHook, name: str, nonce: str | None) -> None:
    """Delete the lock only while the holder of ``nonce`` still holds it: never release someone else's lock."""
    holder = hook.get_registered_model_tags(name)
    if nonce and holder is not None and holder.get(TAG_NONCE) == nonce:
        hook.delete_registered_model(name)
