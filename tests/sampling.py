"""Seeded samples of large case sets: a different sample every run, the seed printed on failure.

A test that has hundreds of equivalent cases (fault schedules, column pairs, rounds) runs a
few of them, drawn with a seed that changes from run to run, so that the whole set is
covered across runs. ``MLOPS_TEST_SEED=<seed>`` replays one run's sample;
``MLOPS_TEST_FULL=1`` runs every case.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import TypeVar

SEED_VARIABLE = "MLOPS_TEST_SEED"
FULL_VARIABLE = "MLOPS_TEST_FULL"

T = TypeVar("T")


def session_seed() -> int:
    """This run's seed: ``MLOPS_TEST_SEED`` when set, else drawn once and stored there (subprocesses see it)."""
    value = os.environ.get(SEED_VARIABLE)
    if not value:
        value = str(random.SystemRandom().randrange(2**32))
        os.environ[SEED_VARIABLE] = value
    return int(value)


def full() -> bool:
    """Whether every case runs (``MLOPS_TEST_FULL=1``)."""
    return os.environ.get(FULL_VARIABLE) == "1"


def rng(salt: str = "") -> random.Random:
    """A generator seeded by this run's seed (and ``salt``, so that two tests draw independently)."""
    return random.Random(f"{session_seed()}:{salt}")


def sampled(population: Sequence[T], k: int, *, salt: str = "") -> list[T]:
    """``k`` items of ``population`` drawn with this run's seed, in population order; all of them under ``MLOPS_TEST_FULL=1``."""
    items = list(population)
    if full() or k >= len(items):
        return items
    chosen = set(rng(salt).sample(range(len(items)), k))
    return [item for index, item in enumerate(items) if index in chosen]


def replay_hint() -> str:
    """What to put in a failure message so that the same sample can be run again."""
    return f"replay with {SEED_VARIABLE}={session_seed()} (all cases: {FULL_VARIABLE}=1)"
