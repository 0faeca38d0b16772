"""
# rollback_<model>

Put each model's previous champion back (manual only).

Tasks: `restore_previous_champion` swaps the `champion` and `previous_champion` aliases and
verifies them by reading back; running it twice restores the starting state.
"""

from mlops_airflow.dag_factory import build_rollback_dag, dags_of_every_spec

# Each spec on its own: a refused one gets DAGs that fail at once and name the file and field.
globals().update(dags_of_every_spec("rollback", build_rollback_dag, doc_md=__doc__))
