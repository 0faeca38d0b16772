from __future__ import annotations

import json

import pytest

from mlops_airflow.hooks.mlflow import MlflowHook


def set_connection(monkeypatch, **fields):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_TEST", json.dumps({"conn_type": "http", **fields}))


class TestTrackingUri:
    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            pytest.param({"host": "mlflow.svc", "port": 5000}, "http://mlflow.svc:5000", id="host-port"),
            pytest.param({"host": "mlflow.example.com", "schema": "https"}, "https://mlflow.example.com", id="https-no-port"),
            pytest.param({"host": "https://mlflow.example.com/"}, "https://mlflow.example.com", id="host-with-scheme"),
            pytest.param({"host": "ignored", "extra": {"tracking_uri": "sqlite:///x.db"}}, "sqlite:///x.db", id="extra-wins"),
        ],
    )
    def test_from_connection(self, monkeypatch, fields, expected):
        set_connection(monkeypatch, **fields)
        assert MlflowHook(mlflow_conn_id="mlflow_test").get_tracking_uri() == expected

    def test_explicit_argument_beats_connection(self, monkeypatch):
        set_connection(monkeypatch, host="mlflow.svc", port=5000)
        assert MlflowHook(mlflow_conn_id="mlflow_test", tracking_uri="http://other:1").get_tracking_uri() == "http://other:1"

    def test_connection_without_host(self, monkeypatch):
        set_connection(monkeypatch)
        with pytest.raises(ValueError, match="neither a host nor extra.tracking_uri"):
            MlflowHook(mlflow_conn_id="mlflow_test").get_tracking_uri()


def test_credentials_go_to_the_environment_only(monkeypatch):
    set_connection(monkeypatch, host="mlflow.svc", port=5000, login="pipeline", password="s3cret-value")
    env = MlflowHook(mlflow_conn_id="mlflow_test").get_env()
    assert env == {
        "MLFLOW_TRACKING_URI": "http://mlflow.svc:5000",
        "MLFLOW_REGISTRY_URI": "http://mlflow.svc:5000",
        "MLFLOW_TRACKING_USERNAME": "pipeline",
        "MLFLOW_TRACKING_PASSWORD": "s3cret-value",
    }
    assert "s3cret" not in env["MLFLOW_TRACKING_URI"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"host": "m", "password": "pw", "extra": {"lock_secret": "ls"}}, "ls", id="lock-secret"),
        # Never the password: a seal is readable by every MLflow user and would test guesses of it.
        pytest.param({"host": "m", "password": "pw"}, "", id="not-the-password"),
        pytest.param({"host": "m"}, "", id="open-registry"),
    ],
)
def test_lock_secret(monkeypatch, fields, expected):
    set_connection(monkeypatch, **fields)
    assert MlflowHook(mlflow_conn_id="mlflow_test").get_lock_secret() == expected
    assert MlflowHook(mlflow_conn_id="mlflow_test", tracking_uri="sqlite:///x.db").get_lock_secret() == ""


class TestRegistryCalls:
    def test_aliases_against_a_real_store(self, mlflow_store):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
        client.create_registered_model("m")
        client.create_model_version("m", source="file:///tmp/none", run_id=None)
        hook = MlflowHook()
        assert hook.get_version_by_alias("m", "champion") is None
        assert hook.get_version_by_alias("no-such-model", "champion") is None
        hook.set_alias("m", "champion", 1)
        assert str(hook.get_version_by_alias("m", "champion").version) == "1"
        hook.delete_alias("m", "champion")
        assert hook.get_version_by_alias("m", "champion") is None
        assert hook.test_connection()[0] is True


def test_loading_a_model_leaves_the_process_as_it_was(mlflow_store, monkeypatch):
    import os

    import mlflow
    from sklearn.dummy import DummyClassifier

    # monkeypatch records both variables first, so whatever MLflow writes is undone after the test.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_store)
    mlflow.set_tracking_uri(mlflow_store)
    mlflow.set_registry_uri(mlflow_store)
    with mlflow.start_run():
        model = DummyClassifier().fit([[0], [1]], [0, 1])
        info = mlflow.sklearn.log_model(model, name="m", registered_model_name="dummy", pip_requirements=["scikit-learn"])
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")

    loaded = MlflowHook().load_model("dummy", info.registered_model_version, estimator_kind="logistic_regression")
    assert loaded.predict([[0]]).shape == (1,)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
