"""Faults injected into a model server started with this folder on its PYTHONPATH (a bad challenger for the release tests).

``MLOPS_TEST_FAULT_ERROR_RATE`` (a share of requests answered 500) and ``MLOPS_TEST_FAULT_LATENCY_MS``
(added to every request) wrap the scoring of each request; nothing else changes, so the server's
inference log records the faults as a client sees them. Python imports ``sitecustomize`` at start.
"""

from __future__ import annotations

import asyncio
import os
import random

ERROR_RATE = float(os.environ.get("MLOPS_TEST_FAULT_ERROR_RATE") or 0)
LATENCY_SECONDS = float(os.environ.get("MLOPS_TEST_FAULT_LATENCY_MS") or 0) / 1000.0

if ERROR_RATE or LATENCY_SECONDS:
    from mlops_airflow.serving import micro_batching

    _score = micro_batching.MicroBatcher.score

    async def _faulty_score(self, body: bytes, content_type: str) -> micro_batching.ScoringResponse:
        if LATENCY_SECONDS:
            await asyncio.sleep(LATENCY_SECONDS)
        if random.random() < ERROR_RATE:
            return micro_batching.ScoringResponse(500, b'{"error_code": "INTERNAL_ERROR", "message": "injected fault"}')
        return await _score(self, body, content_type)

    micro_batching.MicroBatcher.score = _faulty_score
