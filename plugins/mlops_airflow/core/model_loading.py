"""Loading a model version safely: the skops format only, with the package's trusted types.

Where it sits in the loop: every process of ours that runs a model version (evaluation, the smoke
test's offline predictions, batch scoring, the model servers) loads it through here, and deploy
checks a version here before any server starts.

A version's artifacts are data that whoever can write to the registry wrote. MLflow's own loader
trusts them: pickle and cloudpickle run code while they are read, a pyfunc ``loader_module`` or a
``code`` path is imported, and a skops file is loaded with the trusted types listed in the model's
own MLmodel. Here the MLmodel is read as plain YAML first, anything but an ``mlflow.sklearn`` model
in the skops format is refused before a byte of its payload is deserialised, and the skops file is
loaded with the types this package trusts for the estimator kind (``training/estimators.py``),
never with the model's list. Nothing here imports Airflow: the model server image has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# MLflow's switch for its pickle-based loaders; "false" in every process we start, so that no
# MLflow loader there deserialises a model (ours does not need it).
PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
SAFE_MODEL_ENV = {PICKLE_ENV: "false"}

# The training run records the estimator kind as this param (training/train.py).
ESTIMATOR_PARAM = "estimator"

_LOADER_MODULE = "mlflow.sklearn"
_SERIALIZATION_FORMAT = "skops"
_FLAVORS = {"python_function", "sklearn"}
_PREDICT_FNS = ("predict", "predict_proba")


class UnsafeModelError(ValueError):
    """A model that is not in the one format we load; loading it could run code it carries."""


def _skops_io():
    """``skops.io``, imported without a warning flood.

    Its import looks up each scipy ufunc (they carry no ``__module__``) in every loaded module; in
    an Airflow task that asks each of Airflow's deprecated-name modules, which warns 1,160 times
    (about 0.5 s of the import's 2.5 s, and every line in the task's log). Those warnings are
    FutureWarnings, which skops does not silence; here they are.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import skops.io
    return skops.io


@dataclass(frozen=True)
class SkopsModel:
    """What the MLmodel of an acceptable version says: its skops file and the pyfunc method that predicts."""

    model_file: Path
    predict_fn: str


def trusted_types(kind: str) -> list[str]:
    """The types the package trusts in a skops file of estimator ``kind``; an unknown kind is refused."""
    from mlops_airflow.core.estimators import TRUSTED_TYPES

    if kind not in TRUSTED_TYPES:
        raise UnsafeModelError(f"estimator kind {kind!r} is not one the package lists trusted types for ({', '.join(sorted(TRUSTED_TYPES))})")
    return list(TRUSTED_TYPES[kind])


def estimator_kind(run_params: Mapping[str, str], default: str) -> str:
    """
    The estimator kind a version was trained as (its run's ``estimator`` param), else ``default``.

    It only chooses which of the package's reviewed lists applies: a champion trained before the
    spec changed its estimator still loads. A kind the package does not know is refused by
    :func:`trusted_types`.
    """
    return str(run_params.get(ESTIMATOR_PARAM) or default)


def inspect_model_dir(path: str | Path, *, what: str, trusted: Sequence[str]) -> SkopsModel:
    """
    Check a downloaded model directory without deserialising anything of it.

    :param what: names the version in every message (``churn v3``).
    :param trusted: the package's trusted types for the version's estimator kind.
    :raises UnsafeModelError: with the reason, for anything but an ``mlflow.sklearn`` skops model
        whose skops file needs no type outside ``trusted``.
    """
    import yaml

    root = Path(path).resolve()
    try:
        meta = yaml.safe_load((root / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UnsafeModelError(f"{what}: its MLmodel cannot be read: {err}") from err
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavors, dict):
        raise UnsafeModelError(f"{what}: its MLmodel declares no flavors")
    pyfunc, sklearn = flavors.get("python_function"), flavors.get("sklearn")
    if set(flavors) != _FLAVORS or not isinstance(pyfunc, dict) or not isinstance(sklearn, dict):
        raise UnsafeModelError(f"{what}: flavors {sorted(map(str, flavors))}; only an {_LOADER_MODULE} model (python_function + sklearn) is loaded")
    if pyfunc.get("loader_module") != _LOADER_MODULE:
        raise UnsafeModelError(f"{what}: pyfunc loader_module {pyfunc.get('loader_module')!r}; only {_LOADER_MODULE!r} is loaded")
    if sklearn.get("serialization_format") != _SERIALIZATION_FORMAT:
        raise UnsafeModelError(
            f"{what}: serialization_format {sklearn.get('serialization_format')!r}; only {_SERIALIZATION_FORMAT!r} is loaded "
            "(pickle and cloudpickle run code while they are read)"
        )
    if pyfunc.get("code") or sklearn.get("code"):
        raise UnsafeModelError(f"{what}: it ships code ({pyfunc.get('code') or sklearn.get('code')!r}), which loading would import")
    name = sklearn.get("pickled_model")
    model_file = (root / str(name)).resolve() if isinstance(name, str) and name else None
    if model_file is None or root not in model_file.parents or not model_file.is_file() or pyfunc.get("model_path") not in (None, name):
        raise UnsafeModelError(f"{what}: its model file {name!r} is not a file inside the model directory")
    predict_fn = pyfunc.get("predict_fn", "predict")
    if predict_fn not in _PREDICT_FNS:
        raise UnsafeModelError(f"{what}: predict_fn {predict_fn!r}; only {', '.join(_PREDICT_FNS)}")
    try:
        needed = _skops_io().get_untrusted_types(file=model_file)  # reads the schema; constructs nothing
    except Exception as err:  # any reader error: not a skops file we can vouch for
        raise UnsafeModelError(f"{what}: its skops file cannot be read: {err}") from err
    untrusted = sorted(set(needed) - set(trusted))
    if untrusted:
        raise UnsafeModelError(f"{what}: its skops file needs types the package does not trust for this estimator: {', '.join(untrusted)}")
    return SkopsModel(model_file=model_file, predict_fn=str(predict_fn))


def load_model_dir(path: str | Path, *, what: str, trusted: Sequence[str]) -> Any:
    """
    Load a downloaded model directory as an MLflow ``PyFuncModel``, after :func:`inspect_model_dir`.

    The skops file is loaded with ``trusted`` (the package's list) only; the model's own
    ``skops_trusted_types`` is never read. The result predicts like ``mlflow.pyfunc.load_model``'s:
    the same signature enforcement, the same ``predict_fn``.
    """
    checked = inspect_model_dir(path, what=what, trusted=trusted)
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    try:
        estimator = _skops_io().load(checked.model_file, trusted=list(trusted))
    except Exception as err:  # UntrustedTypesFoundException included: refused, whatever skops raised
        raise UnsafeModelError(f"{what}: its skops file does not load with the package's trusted types: {err}") from err
    meta = Model.load(str(Path(path) / "MLmodel"))
    return PyFuncModel(model_meta=meta, model_impl=estimator, predict_fn=checked.predict_fn, model_id=meta.model_id)
