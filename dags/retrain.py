"""
# retrain_<model>

Retrain each model on a fresh window of data and register the result as `challenger`.

Runs on the spec's cron, by hand from the trigger form (Params: window end, window length,
reason), and when drift triggers it. One run at a time per model.

Tasks: `train_model` runs `python -m mlops_airflow.training`, which logs one MLflow run
(params, metrics, model with signature, dataset lineage, a reference sample for drift)
and registers a model version with alias `challenger`.
"""

from mlops_airflow.dag_factory import build_retrain_dag, dags_of_every_spec

# Each spec on its own: a refused one gets DAGs that fail at once and name the file and field.
globals().update(dags_of_every_spec("retrain", build_retrain_dag, doc_md=__doc__))
