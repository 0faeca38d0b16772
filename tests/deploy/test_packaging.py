"""What ships: the production wheel and the images carry the package without its demo harness."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "plugins" / "mlops_airflow"
HARNESS = "mlops_airflow/embedded/"


def uv() -> str:
    found = shutil.which("uv") or str(REPO_ROOT / ".local" / "bootstrap" / "bin" / "uv")
    assert Path(found).exists(), "uv is installed by `make setup`"
    return found


def test_the_wheel_holds_every_module_but_the_demo_harness(tmp_path):
    subprocess.run([uv(), "build", "--wheel", "--out-dir", str(tmp_path), str(REPO_ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("mlops_airflow-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("mlops_airflow/") and name.endswith(".py")}
    modules = {f"mlops_airflow/{path.relative_to(PACKAGE).as_posix()}" for path in PACKAGE.rglob("*.py")}
    assert {name for name in shipped if name.startswith(HARNESS)} == set()
    assert shipped == {name for name in modules if not name.startswith(HARNESS)}


def test_the_images_leave_the_demo_harness_out():
    # Both images (the Astro project's and include/airflow's) build from the repository root.
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "plugins/mlops_airflow/embedded/" in ignored
