"""``make demo``: start the embedded stack, make data, retrain the demo model, say what happened."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

from mlops_airflow.airflow_api import AirflowClient
from mlops_airflow.constants import CHALLENGER_ALIAS, CHAMPION_ALIAS, RETRAIN_DAG_PREFIX, TAG_DECISION, TAG_DECISION_REASONS
from mlops_airflow.embedded.stack import EmbeddedStack, StackConfig, StackError

DEMO_DAYS = 42
DEMO_ROWS_PER_DAY = 2000


def ensure_demo_data(config: StackConfig, model: str, today: dt.date, *, echo: Callable[[str], None] = print) -> str:
    """Generate the demo partitions that are not there yet; generation is deterministic per day."""
    import os

    from mlops_airflow.dag_factory import specs_dir
    from mlops_airflow.partitions import days_between, list_partition_files, write_partition
    from mlops_airflow.specs import find_spec
    from mlops_airflow.synthetic import generate_day

    os.environ["MLOPS_DATA_ROOT"] = str(config.data_root)
    spec = find_spec(specs_dir(), model)
    missing = [d for d in days_between(today - dt.timedelta(days=DEMO_DAYS), today) if not list_partition_files(spec.data.uri, d)]
    if missing:
        import pyarrow as pa

        echo(f"data: generating {len(missing)} daily partitions of {DEMO_ROWS_PER_DAY} rows under {spec.data.uri}")
        for day in missing:
            frame = generate_day(day, rows=DEMO_ROWS_PER_DAY)
            write_partition(pa.Table.from_pandas(frame, preserve_index=False), spec.data.uri, day)
    else:
        echo(f"data: {DEMO_DAYS} days already present under {spec.data.uri}")
    return spec.data.uri


def registry_alias(mlflow_url: str, model: str, alias: str) -> dict | None:
    query = urllib.parse.urlencode({"name": model, "alias": alias})
    try:
        with urllib.request.urlopen(f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?{query}", timeout=10) as response:  # noqa: S310
            return json.loads(response.read())["model_version"]
    except (OSError, ValueError, KeyError):
        return None


def show_live_prediction(config: StackConfig, model: str, today: dt.date, *, echo: Callable[[str], None] = print) -> bool:
    """Score two rows of today's data through the live URL, as a client of the model would."""
    import json as _json

    from mlops_airflow.dag_factory import specs_dir
    from mlops_airflow.features import prepare_features
    from mlops_airflow.partitions import read_window
    from mlops_airflow.serving.local import LocalServingBackend
    from mlops_airflow.serving.smoke import payload, post
    from mlops_airflow.specs import find_spec

    spec = find_spec(specs_dir(), model)
    backend = LocalServingBackend(model=model, state_dir=config.serving_dir, ports=config.serving_ports)
    status = backend.status()
    if status.live is None:
        echo(f"serving: nothing is live for {model}")
        return False
    rows = prepare_features(read_window(spec.data.uri, today - dt.timedelta(days=1), today).frame.head(2), spec)
    code, latency, answer = post(backend.live_url(), payload(rows), timeout=10)
    echo(f"serving: {model} v{status.live_version} is live on {status.live} at {backend.live_url()}/invocations")
    echo(f"         2 rows -> HTTP {code} in {latency:.0f} ms: {_json.dumps(answer)[:200]}")
    return code == 200


def run_demo(config: StackConfig, model: str = "churn", *, echo: Callable[[str], None] = print, run_timeout: float = 900.0) -> bool:
    started = time.monotonic()
    stack = EmbeddedStack(config, echo=echo)
    stack.up()
    today = dt.datetime.now(tz=dt.UTC).date()
    ensure_demo_data(config, model, today, echo=echo)

    password = config.admin_password()
    if password is None:
        raise StackError(f"Airflow has not written the admin password to {config.admin_password_file}")
    client = AirflowClient(config.airflow_url, "admin", password)
    dag_id = f"{RETRAIN_DAG_PREFIX}{model}"
    echo(f"airflow: waiting for {dag_id} to be parsed")
    client.wait_for_dag(dag_id)
    client.set_paused(dag_id, False)
    run = client.trigger(dag_id, conf={"window_end": today.isoformat(), "reason": "make demo"})
    run_id = run["dag_run_id"]
    echo(f"airflow: triggered {dag_id} run {run_id}; waiting for it")
    finished = client.wait_for_run(dag_id, run_id, timeout=run_timeout)

    echo("")
    echo(f"{dag_id} run {run_id}: {finished['state'].upper()}")
    for ti in sorted(client.task_instances(dag_id, run_id), key=lambda t: t.get("start_date") or ""):
        duration = f"{ti['duration']:.1f} s" if ti.get("duration") is not None else "-"
        echo(f"  {ti['task_id']:<28} {str(ti['state']):<10} try {ti.get('try_number', '?')}  {duration}")
    version = registry_alias(config.mlflow_url, model, CHALLENGER_ALIAS)
    if version:
        tags = {t["key"]: t["value"] for t in version.get("tags", [])}
        echo(f"model: {model} version {version['version']} is {CHALLENGER_ALIAS!r} (MLflow run {version['run_id']})")
        if TAG_DECISION in tags:
            echo(f"       decision: {tags[TAG_DECISION]} ({tags.get(TAG_DECISION_REASONS, '')})")
    else:
        echo(f"model: no {CHALLENGER_ALIAS!r} version of {model} is registered")
    champion = registry_alias(config.mlflow_url, model, CHAMPION_ALIAS)
    echo(f"model: {model} version {champion['version']} is {CHAMPION_ALIAS!r}" if champion else f"model: {model} has no {CHAMPION_ALIAS!r}")
    served = show_live_prediction(config, model, today, echo=echo)
    run_path = urllib.parse.quote(run_id, safe="")
    echo("")
    echo(f"Airflow UI:  {config.airflow_url}/dags/{dag_id}/runs/{run_path}   (user admin, password {password})")
    echo(f"MLflow UI:   {config.mlflow_url}/#/models/{model}")
    echo(f"Logs:        {config.log_dir}")
    echo(f"Demo took {time.monotonic() - started:.0f} s. The stack keeps running; `make stop` ends it.")
    return finished["state"] == "success" and version is not None and served
