"""HMAC seals on records every MLflow user can read and any writer could forge: the registry lock, a promotion.

Airflow-free. The key is the MLflow connection's ``extra.lock_secret``, stretched with
PBKDF2 (a seal is public, so a weak secret must be slow to guess); never the MLflow
password. With no secret the key is empty: a seal then tells our code path from a
hand-made record only, and anyone who reads this code can forge it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

_KDF_ITERATIONS = 200_000


@functools.lru_cache(maxsize=8)
def key(secret: str, purpose: str) -> bytes:
    """The HMAC key for ``purpose`` (one key per kind of record: a seal of one never verifies another)."""
    if not secret:
        return b""
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), f"mlops_airflow.{purpose}".encode(), _KDF_ITERATIONS)


def mac(secret: str, purpose: str, *fields: str) -> str:
    return hmac.new(key(secret, purpose), "\n".join(fields).encode(), hashlib.sha256).hexdigest()


def verifies(found: str | None, secret: str, purpose: str, *fields: str) -> bool:
    # compare_digest refuses a non-ASCII str (a tag anyone with EDIT can write): such a tag is no seal.
    return bool(found) and found.isascii() and hmac.compare_digest(found, mac(secret, purpose, *fields))
