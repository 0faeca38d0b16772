"""
# batch_score_<model>

Score one day of each model's data with the `champion` version.

Daily over the data interval; backfills re-score past days. Tasks: `wait_for_partition`,
then `score_partition` writes `<predictions uri>/dt=YYYY-MM-DD/predictions.parquet`
atomically (a re-run replaces it whole). Skipped while there is no champion.
"""

from mlops_airflow.dag_factory import build_batch_score_dag, dags_of_every_spec

# Each spec on its own: a refused one gets DAGs that fail at once and name the file and field.
globals().update(dags_of_every_spec("batch_score", build_batch_score_dag, doc_md=__doc__))
