"""Two versions of the demo's churn pipeline served by the real model servers: a fixture and helpers shared by the serving tests."""

from __future__ import annotations

import datetime as dt
import json

from helpers import REPO_ROOT, free_port

from mlops_airflow.serving.base import Color
from mlops_airflow.serving.local import LocalServingBackend
from mlops_airflow.serving.local_ports import LocalPorts
from mlops_airflow.serving.model_server import Capacity

KIND = "hist_gradient_boosting"


def build_churn(tmp_path_factory) -> dict:
    """Two versions of the demo's churn pipeline (its spec's estimator, two seeds and learning rates), saved as skops,
    with 2-row request bodies (the features and the ``customer_id`` key) and each version's offline predictions for them."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    import yaml
    from mlflow.models import infer_signature

    from mlops_airflow.core.estimators import TRUSTED_TYPES, build_pipeline
    from mlops_airflow.core.features import prepare_features
    from mlops_airflow.core.model_loading import load_model_dir, trusted_types
    from mlops_airflow.embedded.synthetic import generate_day
    from mlops_airflow.specs import parse_spec

    spec = parse_spec(yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text()), source="churn.yaml")
    frame = pd.concat([generate_day(dt.date(2026, 3, 1) + dt.timedelta(days=i), rows=2000) for i in range(7)], ignore_index=True)
    features, labels = prepare_features(frame, spec), frame[spec.target.column].astype("int64")
    root = tmp_path_factory.mktemp("churn")
    sample = features.sample(400, random_state=1)
    # As the docs tell clients to: the performance key beside the features (the server leaves it out of what the model sees).
    keyed = sample.assign(customer_id=frame.loc[sample.index, "customer_id"].to_numpy())
    bodies = [json.dumps({"dataframe_split": json.loads(keyed.iloc[i : i + 2].to_json(orient="split", index=False))}).encode() for i in range(0, 400, 2)]
    versions = {}
    for version, (seed, rate) in {"1": (42, 0.08), "2": (7, 0.2)}.items():
        params = {**spec.training.estimator.params, "learning_rate": rate}
        pipeline = build_pipeline(KIND, params, numeric=spec.features.numeric, categorical=spec.features.categorical, seed=seed).fit(features, labels)
        path = root / f"v{version}"
        example = features.head(5)
        mlflow.sklearn.save_model(
            pipeline,
            str(path),
            signature=infer_signature(example, pipeline.predict_proba(example)),
            pyfunc_predict_fn="predict_proba",
            serialization_format="skops",
            skops_trusted_types=list(TRUSTED_TYPES[KIND]),
            pip_requirements=["scikit-learn"],
        )
        offline = np.asarray(load_model_dir(path, what=f"churn v{version}", trusted=trusted_types(KIND)).predict(sample))
        versions[version] = {"uri": path.as_uri(), "offline": [offline[i : i + 2].tolist() for i in range(0, 400, 2)]}
    assert versions["1"]["offline"] != versions["2"]["offline"]
    return {"bodies": bodies, "versions": versions}


def which_version(churn, answer) -> str | None:
    """The version whose offline predictions this answer carries exactly; ``None`` for none."""
    predictions = json.loads(answer.body)["predictions"]
    return next((v for v, entry in churn["versions"].items() if entry["offline"][answer.request] == predictions), None)


def backend_for(tmp_path, model: str = "churn", capacity: Capacity | None = None, **kwargs) -> LocalServingBackend:
    ports = LocalPorts(live=free_port(), blue=free_port(), green=free_port())
    return LocalServingBackend(model=model, state_dir=tmp_path / "serving", ports=ports, capacity=capacity, **kwargs)


def release(backend: LocalServingBackend, color: Color, version: str, churn) -> None:
    backend.deploy(color, version, churn["versions"][version]["uri"], estimator_kind=KIND)
    backend.wait_ready(color, timeout=180, poll=0.5)
