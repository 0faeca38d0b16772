"""
# example_new_champion_churn

An example of *another team's* DAG: scheduled on the Asset `churn.champion`
(`mlops_airflow.assets.champion_asset("churn")`), it runs each time the `churn` model gets a
new champion, whether `retrain_churn` promoted one or a rollback restored the one before.
Copy it to start your own: refresh a report, re-score a table, tell a channel.

Its one task reads the triggering events: each one's extras hold the new champion's
`version`, the `previous` one, its MLflow training `run_id`, the `decision` (`promoted`,
`forced` or `rolled_back`) and the `dag_run` that made it.
"""

import datetime as dt

from airflow.sdk import DAG, task

from mlops_airflow.assets import champion_asset

MODEL = "churn"
CHAMPION = champion_asset(MODEL)

with DAG(
    dag_id=f"example_new_champion_{MODEL}",
    description=f"Example consumer: runs on each new champion of {MODEL}",
    schedule=[CHAMPION],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "analytics", "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["mlops", "example", f"model:{MODEL}"],
    doc_md=__doc__,
):

    @task
    def note_new_champion(**context) -> list[dict]:
        """The champions this run was triggered by, oldest first, as their events describe them."""
        events = context["triggering_asset_events"][CHAMPION]
        changes = [{**(event.extra or {}), "at": event.timestamp.isoformat()} for event in events]
        for change in changes:
            print(f"{MODEL}: champion v{change.get('version')} ({change.get('decision')}; before: v{change.get('previous')}) by {change.get('dag_run')}")
        return changes

    note_new_champion()
