"""
# performance_monitor_<model>

Judge each model's champion on live outcomes: labels that arrive days after the predictions.
Built for the specs with a `performance` section.

Runs on the spec's schedule (daily by default). Tasks: `measure_performance` joins the
champion's batch predictions with the labels partitions that are due (`label_delay_days`),
computes the realized metrics per day and per segment, estimates ROC AUC and accuracy for the
days whose labels have not arrived yet, measures the shift of the champion's scores against its
validation scores (prediction drift) and flags concept drift; everything is recorded on the
champion's MLflow run and sent as metrics → `decide_retrain` (the decay judgement on a
bootstrap bound, the cooldown) → `trigger_retrain` (one `retrain_<model>` run per labelled
window, with the summary as its `performance` Param).
"""

from mlops_airflow.dag_factory import build_performance_monitor_dag, dags_of_every_spec

# Each spec on its own: a refused one gets DAGs that fail at once and name the file and field.
globals().update(dags_of_every_spec("performance_monitor", build_performance_monitor_dag, doc_md=__doc__))
