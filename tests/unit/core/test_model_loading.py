"""Loading a model version: skops with the package's trusted types, or nothing of it runs.

A version logged with pickle carries a payload that writes a marker file when unpickled.
MLflow's own loader runs it (the positive control); every path of ours that loads, checks or
serves a version refuses it first, and the marker never appears.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pickle
import shlex
import shutil
from pathlib import Path

import pytest
from helpers import DATA_END, REPO_ROOT, mark_promoted, task_context

from mlops_airflow.core.model_loading import UnsafeModelError, inspect_model_dir, load_model_dir, trusted_types

SPEC = str(REPO_ROOT / "include" / "models" / "churn.yaml")
HGB = "hist_gradient_boosting"


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def pickle_model(folder: Path, marker: Path, *, serialization_format: str = "cloudpickle") -> Path:
    """An mlflow.sklearn model directory whose pickled model is the payload."""
    import mlflow.sklearn
    from sklearn.dummy import DummyClassifier

    mlflow.sklearn.save_model(
        DummyClassifier().fit([[0], [1]], [0, 1]), str(folder), serialization_format=serialization_format, pip_requirements=["scikit-learn"]
    )
    (folder / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    return folder


def skops_model(folder: Path, *, listed: list[str], needs_eval: bool) -> Path:
    """An mlflow.sklearn skops model whose MLmodel lists ``listed``; with ``needs_eval`` the file references builtins.eval."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0, 0.0], [1.0, 1.0], [0.1, 0.2], [0.9, 0.8]]), [0, 1, 0, 1])
    if needs_eval:
        model.callback = eval  # a type outside every list of the package
    mlflow.sklearn.save_model(model, str(folder), skops_trusted_types=listed, pyfunc_predict_fn="predict_proba", pip_requirements=["scikit-learn"])
    return folder


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload-ran"


@pytest.fixture
def mlflow_pickle_allowed(monkeypatch):
    """MLflow's own loader, as the worker ran it before: pickle allowed."""
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")


class TestInspectAndLoad:
    def test_the_payload_runs_under_mlflows_own_loader(self, tmp_path, marker, mlflow_pickle_allowed):
        """The positive control: what the tests below refuse really runs code when MLflow loads it."""
        import mlflow.pyfunc

        folder = pickle_model(tmp_path / "model", marker)
        with contextlib.suppress(Exception):  # the payload unpickles to an int, which is no model; it ran already
            mlflow.pyfunc.load_model(str(folder))
        assert marker.exists()

    @pytest.mark.parametrize("serialization_format", ["cloudpickle", "pickle"])
    def test_a_pickled_model_is_refused_before_it_is_read(self, tmp_path, marker, serialization_format):
        folder = pickle_model(tmp_path / "model", marker, serialization_format=serialization_format)
        for load in (inspect_model_dir, load_model_dir):
            with pytest.raises(UnsafeModelError, match=f"churn v1: serialization_format '{serialization_format}'; only 'skops'"):
                load(folder, what="churn v1", trusted=trusted_types(HGB))
        assert not marker.exists()

    @pytest.mark.parametrize(
        ("edit", "reason"),
        [
            pytest.param(
                lambda meta: meta["flavors"]["python_function"].update(loader_module="mlflow.pyfunc.model"),
                "loader_module 'mlflow.pyfunc.model'",
                id="custom-pyfunc",
            ),
            pytest.param(lambda meta: meta["flavors"].update(keras={}), "flavors \\['keras', 'python_function', 'sklearn'\\]", id="extra-flavor"),
            pytest.param(lambda meta: meta["flavors"]["python_function"].update(code="code"), "it ships code", id="code-path"),
            pytest.param(
                lambda meta: meta["flavors"]["sklearn"].update(pickled_model="../elsewhere.skops"), "not a file inside the model directory", id="file-outside"
            ),
            pytest.param(lambda meta: meta["flavors"]["python_function"].update(predict_fn="__init__"), "predict_fn '__init__'", id="odd-predict-fn"),
            pytest.param(lambda meta: meta.pop("flavors"), "declares no flavors", id="no-flavors"),
        ],
    )
    def test_anything_but_an_sklearn_skops_model_is_refused(self, tmp_path, edit, reason):
        import yaml

        folder = skops_model(tmp_path / "model", listed=["numpy.dtype"], needs_eval=False)
        (tmp_path / "elsewhere.skops").write_bytes((folder / "model.skops").read_bytes())
        meta = yaml.safe_load((folder / "MLmodel").read_text())
        edit(meta)
        (folder / "MLmodel").write_text(yaml.safe_dump(meta))
        with pytest.raises(UnsafeModelError, match=reason):
            load_model_dir(folder, what="churn v1", trusted=trusted_types("logistic_regression"))

    def test_the_models_own_trusted_list_is_never_used(self, tmp_path, mlflow_pickle_allowed):
        """The MLmodel lists builtins.eval and the file needs it: MLflow loads it; the package's list refuses it."""
        import mlflow.pyfunc

        folder = skops_model(tmp_path / "model", listed=["numpy.dtype", "builtins.eval"], needs_eval=True)
        assert mlflow.pyfunc.load_model(str(folder)) is not None  # the control: MLflow trusts the model's own list
        with pytest.raises(UnsafeModelError, match="needs types the package does not trust for this estimator: builtins.eval"):
            load_model_dir(folder, what="churn v1", trusted=trusted_types("logistic_regression"))

    def test_an_extra_listed_type_the_file_does_not_need_changes_nothing(self, tmp_path):
        import numpy as np

        folder = skops_model(tmp_path / "model", listed=["numpy.dtype", "builtins.eval"], needs_eval=False)
        model = load_model_dir(folder, what="churn v1", trusted=trusted_types("logistic_regression"))
        probabilities = np.asarray(model.predict(np.array([[0.0, 0.0], [1.0, 1.0]])))
        assert probabilities.shape == (2, 2)  # the pyfunc predict_fn (predict_proba), as MLflow's loader gives
        assert model.metadata.flavors["python_function"]["loader_module"] == "mlflow.sklearn"

    def test_an_unknown_estimator_kind_has_no_trusted_types(self):
        with pytest.raises(UnsafeModelError, match="estimator kind 'mystery' is not one the package lists"):
            trusted_types("mystery")


# -- every path of ours that loads, checks or serves a registered version ----------------------


@pytest.fixture
def pickled_champion(mlflow_store, tmp_path, marker, churn_data):
    """churn v1: the payload, logged as training logs (estimator param, reference sample), promoted, champion and challenger."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store, mlflow_store)
    folder = pickle_model(tmp_path / "model", marker)
    run = client.create_run(client.create_experiment("churn"))
    client.log_param(run.info.run_id, "estimator", HGB)
    reference = tmp_path / "reference" / "features.parquet"
    reference.parent.mkdir()
    pd.DataFrame({"tenure_months": [1.0, 2.0]}).to_parquet(reference)
    client.log_artifact(run.info.run_id, str(reference), "reference")
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("churn")
    version = client.create_model_version("churn", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    mark_promoted(client, "churn", version.version)
    for alias in ("champion", "challenger"):
        client.set_registered_model_alias("churn", alias, version.version)
    shutil.rmtree(folder)
    return {"version": str(version.version), "run_id": run.info.run_id}


def _hook_load(champion):
    from mlops_airflow.hooks.mlflow import MlflowHook

    MlflowHook().load_model("churn", champion["version"], estimator_kind=HGB)


def _hook_check(champion):
    from mlops_airflow.hooks.mlflow import MlflowHook

    MlflowHook().check_model("churn", champion["version"], estimator_kind=HGB)


def _evaluate(champion):
    from mlops_airflow.operators.evaluation import EvaluateChallengerOperator

    EvaluateChallengerOperator(task_id="evaluate_challenger", spec_path=SPEC, window_end=str(DATA_END)).execute(task_context())


def _batch_score(champion):
    from mlops_airflow.operators.scoring import BatchScoreOperator

    BatchScoreOperator(task_id="score_partition", spec_path=SPEC, partition_date=str(DATA_END - dt.timedelta(days=1))).execute(task_context())


def _smoke_test(champion):
    from mlops_airflow.core.payloads import Release
    from mlops_airflow.operators.serving import SmokeTestIdleOperator

    release = Release(action="deployed", color="green", version=champion["version"], run_id=champion["run_id"]).to_xcom()
    SmokeTestIdleOperator(task_id="smoke_test_idle", spec_path=SPEC).execute(task_context({"deploy_idle_color": release}))


def _deploy(champion, monkeypatch):
    from mlops_airflow.operators.serving import DeployIdleColorOperator
    from mlops_airflow.serving import factory

    class NoServer:
        def __getattr__(self, name):
            raise AssertionError(f"the backend was asked to {name} a refused version")

    monkeypatch.setattr(factory, "serving_backend", lambda spec, mlflow_env: NoServer())
    DeployIdleColorOperator(task_id="deploy_idle_color", spec_path=SPEC).execute(task_context())


PATHS = [
    pytest.param(_hook_load, id="MlflowHook.load_model"),
    pytest.param(_hook_check, id="MlflowHook.check_model"),
    pytest.param(_evaluate, id="evaluate_challenger"),
    pytest.param(_batch_score, id="score_partition"),
    pytest.param(_smoke_test, id="smoke_test_idle"),
    pytest.param(_deploy, id="deploy_idle_color"),
]


@pytest.mark.parametrize("path", PATHS)
def test_every_path_refuses_a_pickled_version_before_it_runs(pickled_champion, marker, path, monkeypatch):
    from mlops_airflow.exceptions import UnsafeModelVersionError

    arguments = (pickled_champion, monkeypatch) if path is _deploy else (pickled_champion,)
    with pytest.raises(UnsafeModelVersionError, match="refusing to load churn v1: serialization_format 'cloudpickle'; only 'skops'"):
        path(*arguments)
    assert not marker.exists()


def test_the_model_server_refuses_a_pickled_version_before_it_runs(pickled_champion, marker, monkeypatch, capsys):
    from mlops_airflow.serving import model_server

    # main() switches pickle off in its own process's environment: here that is the test worker's,
    # so give monkeypatch a value to restore (delenv of an absent variable records nothing).
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    code = model_server.main(["--model-uri", "models:/churn/1", "--estimator-kind", HGB, "--port", "9"])
    assert code == model_server.EXIT_REFUSED
    assert "refusing to serve models:/churn/1: serialization_format 'cloudpickle'" in capsys.readouterr().err
    assert not marker.exists()


def test_no_model_is_loaded_anywhere_but_the_safe_loader():
    """MLflow's loaders (pyfunc, sklearn) and skops' are called from model_loading.py alone."""
    package = REPO_ROOT / "plugins" / "mlops_airflow"
    loaders = ("pyfunc.load_model", "sklearn.load_model", "skops.io.load", "skops_io()", "pickle.load", "cloudpickle.load", "joblib.load")
    found = [
        f"{path.relative_to(package)}: {needle}"
        for path in package.rglob("*.py")
        if path.name != "model_loading.py"
        for needle in loaders
        if needle in path.read_text(encoding="utf-8")
    ]
    assert found == []


def fresh_skops_import(monkeypatch, importer) -> list[str]:
    """The warnings of importing skops.io anew beside a module that warns for every name it lacks, as
    Airflow's deprecated-name modules do (skops' import asks every loaded module for each scipy ufunc)."""
    import sys
    import types
    import warnings

    import skops
    import skops.io

    def lacks(name):
        warnings.warn(f"noisy.{name} is deprecated", FutureWarning, stacklevel=2)
        raise AttributeError(name)

    noisy = types.ModuleType("noisy_deprecated_names")
    noisy.__getattr__ = lacks
    monkeypatch.setitem(sys.modules, noisy.__name__, noisy)
    for name in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")]:
        sys.modules[name] = sys.modules.pop(name)  # loaded after it, as scipy is after Airflow in a task
    monkeypatch.setattr(skops, "io", skops.io)
    for name in [m for m in sys.modules if m == "skops.io" or m.startswith("skops.io.")]:
        monkeypatch.setitem(sys.modules, name, sys.modules[name])  # put back afterwards
        del sys.modules[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importer()
    return [str(w.message) for w in caught if str(w.message).startswith("noisy.")]


def test_skops_is_imported_without_a_warning_per_deprecated_name(monkeypatch):
    """In an Airflow task that was 1,160 FutureWarnings in each log of a task that loads a model."""
    from mlops_airflow.core.model_loading import _skops_io

    assert fresh_skops_import(monkeypatch, lambda: __import__("skops.io")), "the control no longer warns: this guard proves nothing"
    assert fresh_skops_import(monkeypatch, _skops_io) == []
