"""The release demo's parts that need no stack: the spec copy it writes, the clients it runs, the tasks it waits for."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from helpers import REPO_ROOT, churn_spec_raw

from mlops_airflow.embedded.release_demo import DEMO_RELEASE, GATES, Traffic, request_bodies, write_spec_copy
from mlops_airflow.specs import parse_spec


@pytest.mark.parametrize("strategy", sorted(GATES))
def test_the_spec_copy_asks_for_the_strategy_and_parses(tmp_path, strategy):
    copy = tmp_path / "churn.yaml"
    copy.write_text("# Written by the embedded stack\n" + yaml.safe_dump(churn_spec_raw()))
    before = write_spec_copy(copy, {"strategy": strategy, strategy: DEMO_RELEASE[strategy]})
    assert copy.read_text().startswith("# Written by the embedded stack\n")
    spec = parse_spec(yaml.safe_load(copy.read_text()), source=str(copy))
    assert spec.serving.release.strategy == strategy
    assert spec.serving.inference_log.uri is not None
    assert before.startswith("# Written by the embedded stack\n")


@pytest.mark.parametrize("strategy", sorted(GATES))
def test_each_gate_is_a_task_the_dag_gains(strategy):
    from mlops_airflow.dag_factory import build_retrain_dag

    raw = churn_spec_raw()
    raw["serving"]["release"] = {"strategy": strategy, strategy: DEMO_RELEASE[strategy]}
    dag = build_retrain_dag(parse_spec(raw, source="churn.yaml"))
    assert {GATES[strategy], "decide_release"} <= set(dag.task_ids)


def test_request_bodies_score_with_the_specs_features_and_carry_the_performance_key():
    spec = parse_spec(yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text()), source="churn.yaml")
    bodies = request_bodies(spec, rows=10)
    assert len(bodies) == 5
    split = json.loads(bodies[0])["dataframe_split"]
    assert split["columns"] == [*spec.features.columns, "customer_id"]
    assert len(split["data"]) == 2
    from mlops_airflow.core.logged_predictions import request_keys

    assert all(isinstance(key, str) for key in request_keys(bodies[0], spec.performance.key))


def test_traffic_counts_the_answers_by_status():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200 if len(seen) % 2 else 503)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Traffic(f"http://127.0.0.1:{server.server_port}", [b"a", b"b"], clients=2, pause=0.0) as traffic:
            while sum(traffic.statuses.values()) < 20:
                time.sleep(0.01)
        assert set(traffic.statuses) == {200, 503}
        assert set(seen) == {b"a", b"b"}
    finally:
        server.shutdown()
        server.server_close()
