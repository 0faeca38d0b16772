"""
# batch_score_<model>

Score one day of each model's data with the `champion` version.

Daily over the data interval; backfills re-score past days. Tasks: `wait_for_partition`,
then `score_partition` writes `<predictions uri>/dt=YYYY-MM-DD/predictions.parquet`
atomically (a re-run replaces it whole). Skipped while there is no champion.
"""

from mlops_airflow.dag_factory import build_batch_score_dag, model_specs

for _spec in model_specs():
    _dag = build_batch_score_dag(_spec, doc_md=__doc__)
    globals()[_dag.dag_id] = _dag
