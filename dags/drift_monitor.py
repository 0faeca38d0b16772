"""
# drift_monitor_<model>

Watch each model's production data for drift.

Runs on the spec's schedule over its data interval. Tasks: `wait_for_current_data` waits
(in reschedule mode, holding no worker slot) until the day's partition has landed.
"""

from mlops_airflow.dag_factory import build_drift_monitor_dag, model_specs

for _spec in model_specs():
    _dag = build_drift_monitor_dag(_spec, doc_md=__doc__)
    globals()[_dag.dag_id] = _dag
