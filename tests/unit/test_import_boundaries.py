"""Layering: the import contracts hold and can fail; Airflow-free code imports no Airflow; every module has its unit test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "plugins" / "mlops_airflow"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.mark.parametrize(
    "module",
    [
        "mlops_airflow.core.contract",
        "mlops_airflow.core.payloads",
        "mlops_airflow.core.evaluation",
        "mlops_airflow.core.drift_windows",
        "mlops_airflow.training.train",
        "mlops_airflow.training.__main__",
        "mlops_airflow.embedded.synthetic",
        "mlops_airflow.specs",
        "mlops_airflow.stats.gating",
    ],
)
def test_imports_no_airflow(module):
    code = f"import sys, {module}; bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); print(bad); sys.exit(1 if bad else 0)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, f"{module} imported {completed.stdout.strip()} {completed.stderr[-500:]}"


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """import-linter with the project's contracts over the package found in ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_package_keeps_its_layers_and_has_no_import_cycle():
    completed = lint_imports(PACKAGE.parent)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert "3 kept, 0 broken" in completed.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        pytest.param("core/seals.py", "import mlops_airflow.operators.scoring", "Layers run one way", id="core-imports-an-operator"),
        pytest.param("stats/ks.py", "import mlops_airflow.constants", "Layers run one way", id="stats-imports-the-package"),
        pytest.param("core/features.py", "import mlops_airflow.core.evaluation", "No import cycles", id="a-cycle-inside-core"),
        pytest.param("core/payloads.py", "import airflow.sdk", "Airflow-free", id="core-imports-airflow"),
        pytest.param("training/command_line.py", "from mlops_airflow.utils import templates", "Airflow-free", id="training-imports-an-airflow-helper"),
    ],
)
def test_the_contracts_catch_a_wrong_import(tmp_path, module, line, broken):
    copy = tmp_path / "mlops_airflow"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(f"{target.read_text()}\n{line}  # noqa\n")
    completed = lint_imports(tmp_path)
    assert completed.returncode != 0
    assert f"{broken}" in completed.stdout.split("Broken contracts")[-1]


def test_every_module_has_a_unit_test_at_its_mirrored_path():
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" and not (REPO_ROOT / "tests" / "unit" / path.relative_to(PACKAGE).parent / f"test_{path.stem}.py").exists()
    ]
    assert missing == []
