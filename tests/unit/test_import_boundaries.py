"""Layering: pure code and the training entrypoint import no Airflow (a trainer image need not carry it)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "mlops_airflow.core.contract",
        "mlops_airflow.training.train",
        "mlops_airflow.training.__main__",
        "mlops_airflow.embedded.synthetic",
        "mlops_airflow.specs",
    ],
)
def test_imports_no_airflow(module):
    code = f"import sys, {module}; bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); print(bad); sys.exit(1 if bad else 0)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, f"{module} imported {completed.stdout.strip()} {completed.stderr[-500:]}"
