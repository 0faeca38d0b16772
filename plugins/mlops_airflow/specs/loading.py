"""Loading specs from files and folders: one file's errors stay its own, and two specs may not claim the same name or ports."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlops_airflow.settings import specs_dir
from mlops_airflow.specs.model import ModelSpec, ModelSpecError, shown
from mlops_airflow.specs.parsing import parse_spec
from mlops_airflow.specs.reading import _parse_yaml


def load_spec_text(text: str, *, source: str) -> ModelSpec:
    """Validate a spec handed over as YAML text (a pod gets its spec in an environment variable)."""
    return parse_spec(_parse_yaml(text, source), source=source)


def load_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """Load and validate one spec file; its file name must be ``<name>.yaml``."""
    path = Path(path)
    source = str(path)
    try:
        content = path.read_bytes()
    except OSError as err:
        raise ModelSpecError(source, "<file>", f"cannot be read: {err.strerror or err}") from err
    spec = parse_spec(_parse_yaml(content, source), source=source)
    if path.stem != spec.name:
        raise ModelSpecError(source, "name", f"must match the file name {shown(path.stem)}, got {shown(spec.name)}")
    return spec


@dataclass(frozen=True)
class SpecFolder:
    """A folder of specs, each loaded on its own: ``specs`` that passed, ``errors`` of those that did not."""

    specs: tuple[ModelSpec, ...]
    errors: tuple[ModelSpecError, ...]


def load_spec_folder(directory: str | os.PathLike[str]) -> SpecFolder:
    """Load every ``*.yaml`` / ``*.yml`` in ``directory`` on its own: one bad file costs only its own model.

    Besides each file's own checks, a spec is refused when an earlier one (by file name) has
    its name, or a local serving port or Docker live port of its (two models cannot serve on one).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelSpecError(str(directory), "<directory>", "does not exist or is not a directory")
    loaded: list[ModelSpec] = []
    errors: list[ModelSpecError] = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        try:
            loaded.append(load_spec(path))
        except ModelSpecError as err:
            errors.append(err)
    # Who keeps a contested name or port: a spec that sets its ports before one that takes the
    # defaults, then the older file (the one added last is refused, not a model already running).
    accepted: list[ModelSpec] = []
    for spec in sorted(loaded, key=_claim_order):
        try:
            _refuse_clashes(spec, accepted)
        except ModelSpecError as err:
            errors.append(err)
            continue
        accepted.append(spec)
    return SpecFolder(tuple(sorted(accepted, key=lambda s: s.name)), tuple(errors))


def _claim_order(spec: ModelSpec) -> tuple[bool, float, str]:
    try:
        modified = os.stat(spec.source).st_mtime
    except OSError:
        modified = math.inf
    return (not spec.serving.local.explicit, modified, spec.source)


def _refuse_clashes(spec: ModelSpec, accepted: Iterable[ModelSpec]) -> None:
    for other in accepted:
        if other.name == spec.name:
            raise ModelSpecError(spec.source, "name", f"{shown(spec.name)} is already the name of {other.source}")
        if spec.serving.backend == "local" and other.serving.backend == "local":
            for key, port in zip(("live_port", "blue_port", "green_port"), spec.serving.local.ports, strict=True):
                if port in other.serving.local.ports:
                    raise ModelSpecError(
                        spec.source,
                        f"serving.local.{key}",
                        f"port {port} is already {other.name}'s ({other.source}); give every model its own three ports (set serving.local.live_port here)",
                    )
        if spec.serving.backend == "docker" and other.serving.backend == "docker" and spec.serving.docker.live_port == other.serving.docker.live_port:
            raise ModelSpecError(
                spec.source,
                "serving.docker.live_port",
                f"port {spec.serving.docker.live_port} is already {other.name}'s ({other.source}); one live port per model",
            )


def load_specs(directory: str | os.PathLike[str]) -> list[ModelSpec]:
    """Every spec in ``directory``, sorted by name; raises the first error (command lines; DAG files use :func:`load_spec_folder`)."""
    folder = load_spec_folder(directory)
    if folder.errors:
        raise folder.errors[0]
    return list(folder.specs)


def find_spec(directory: str | os.PathLike[str], name: str) -> ModelSpec:
    """Load the spec called ``name`` from ``directory``."""
    for suffix in (".yaml", ".yml"):
        candidate = Path(directory) / f"{name}{suffix}"
        if candidate.exists():
            return load_spec(candidate)
    raise ModelSpecError(str(directory), "<directory>", f"has no spec for model {shown(name)}")


def model_specs() -> list[ModelSpec]:
    """Every spec of the configured folder (:func:`mlops_airflow.settings.specs_dir`); raises on the first bad one.

    For command lines; DAG files load each spec on its own (:func:`mlops_airflow.dag_factory.dags_of_every_spec`).
    """
    return load_specs(specs_dir())
