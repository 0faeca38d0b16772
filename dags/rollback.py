"""
# rollback_<model>

Put each model's previous champion back (manual only).

Tasks: `restore_previous_champion` swaps the `champion` and `previous_champion` aliases and
verifies them by reading back; running it twice restores the starting state.
"""

from mlops_airflow.dag_factory import build_rollback_dag, model_specs

for _spec in model_specs():
    _dag = build_rollback_dag(_spec, doc_md=__doc__)
    globals()[_dag.dag_id] = _dag
