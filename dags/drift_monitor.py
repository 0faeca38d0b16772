"""
# drift_monitor_<model>

Watch each model's production data for drift, and retrain when it drifts.

Runs on the spec's schedule, and at once when a partition of the model's data lands (the data
asset's watcher; `drift.watch_interval_seconds`). The current window is the `drift.window_days` days before the
run's day (or the `window_end` Param). Tasks: `wait_for_current_data` (reschedule mode,
no worker slot held) → `check_current_data` (the data contract) → `detect_drift` (KS per
numeric feature, chi-squared per categorical, Benjamini-Hochberg, an effect floor; with the
watcher on, one check, skipped without drift; without it, deferred to the triggerer between
checks and skipped when nothing drifts by its timeout) →
`decide_retrain` (the cooldown) → `trigger_retrain` (one `retrain_<model>` run per drift
window, with the summary as its `drift` Param), and beside it `render_drift_report` (an
Evidently HTML report on the champion's MLflow run).
"""

from mlops_airflow.dag_factory import build_drift_monitor_dag, dags_of_every_spec

# Each spec on its own: a refused one gets DAGs that fail at once and name the file and field.
globals().update(dags_of_every_spec("drift_monitor", build_drift_monitor_dag, doc_md=__doc__))
