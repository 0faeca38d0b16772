"""A corpus of hostile and careless specs: every one is refused with a ModelSpecError naming its field.

Each case is the demo spec with one thing wrong, written to a file and loaded as the DAG files
load it. Anything but a ModelSpecError (a crash, a hang caught by the time limit) fails, and so
does a spec that loads. The control at the end loads the unchanged spec and legitimate edge
values, so the checks are not simply refusing everything.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from helpers import churn_spec_raw

from mlops_airflow.specs import MAX_SPEC_BYTES, ModelSpecError, load_spec

# Every numeric field of the spec: none may be NaN or infinite.
NUMBER_FIELDS = (
    "contract.max_delay_hours",
    "contract.max_duplicate_fraction",
    "contract.rows.min_ratio_to_trailing_mean",
    "contract.rows.max_ratio_to_trailing_mean",
    "contract.columns.monthly_charges.min",
    "contract.columns.monthly_charges.max",
    "contract.columns.days_since_last_login.max_null_fraction",
    "promotion.margin",
    "promotion.confidence",
    "promotion.max_segment_regression",
    "promotion.approval_timeout_hours",
    "promotion.minimums.roc_auc",
    "promotion.maximums.log_loss",
    "serving.smoke.max_p95_ms",
    "serving.smoke.max_error_rate",
    "serving.smoke.tolerance",
    "drift.alpha",
    "drift.min_effect",
    "drift.cooldown_hours",
)
# A value beyond each field's documented upper bound.
TOO_LARGE = {
    "training.window_days": 1_000_000_000,
    "training.reference_sample_rows": 10**12,
    "training.timeout_minutes": 10**9,
    "training.seed": 2**40,
    "training.compute.gpus": 1000,
    "training.compute.schedule_timeout_seconds": 10**9,
    "contract.rows.trailing_days": 10**6,
    "contract.rows.max_per_partition": 10**15,
    "contract.rows.max_ratio_to_trailing_mean": 1e9,
    "contract.max_delay_hours": 1e9,
    "promotion.bootstrap_resamples": 10**12,
    "promotion.min_segment_rows": 10**12,
    "promotion.margin": 5.0,
    "promotion.approval_timeout_hours": 1e6,
    "serving.drain_seconds": 10**15,
    "serving.ready_timeout_seconds": 10**9,
    "serving.smoke.golden_rows": 10**9,
    "serving.smoke.burst_requests": 10**9,
    "serving.smoke.max_p95_ms": 1e12,
    "serving.kubernetes.replicas": 10**6,
    "serving.kubernetes.port": 70_000,
    "drift.window_days": 10**6,
    "drift.lookback_days": 10**6,
    "drift.min_samples": 10**12,
    "drift.check_interval_minutes": 10**6,
    "drift.watch_interval_seconds": 10**9,
    "drift.timeout_minutes": 10**9,
    "drift.cooldown_hours": 1e9,
    "drift.max_backfill_days": 73_050,  # 1900-01-01..2100-01-01: tens of thousands of batch-score runs
}


def changed(path: str, value) -> dict:
    raw = churn_spec_raw()
    *parents, last = path.split(".")
    section = raw
    for key in parents:
        section = section.setdefault(key, {})
    section[last] = value
    return raw


def text_of(raw: dict) -> str:
    return yaml.safe_dump(raw, sort_keys=False)


BASE = text_of(churn_spec_raw())


def cases():
    """``(id, content, field)``: the file's content (text or bytes) and the field its error must name."""
    for path in NUMBER_FIELDS:
        for value, label in ((float("inf"), "inf"), (float("-inf"), "-inf"), (float("nan"), "nan")):
            yield f"non-finite-{path}-{label}", text_of(changed(path, value)), path
    for path, value in TOO_LARGE.items():
        yield f"too-large-{path}", text_of(changed(path, value)), path
    # A key given twice: YAML would silently keep the last one.
    yield "duplicate-top-level-key", BASE + "name: other\n", "<file>"
    yield "duplicate-nested-key", BASE.replace("  margin: 0.005\n", "  margin: 0.005\n  margin: 5.0\n"), "<file>"
    yield "duplicate-section", BASE + "serving:\n  drain_seconds: 1\n", "<file>"
    # Size, aliases and nesting: refused before anything is built.
    yield "too-big", BASE + f"# {'x' * MAX_SPEC_BYTES}\n", "<file>"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    yield "alias-bomb", BASE + bomb, "<file>"
    yield (
        "one-alias",
        BASE.replace("  primary_metric: roc_auc\n", "  primary_metric: &m roc_auc\n  metrics: [*m]\n", 1).replace(
            "  metrics: [roc_auc, accuracy, f1, log_loss]\n", ""
        ),
        "<file>",
    )
    yield "deep-list", BASE + "extra: " + "[" * 10_000 + "]" * 10_000 + "\n", "<file>"
    yield "deep-mapping", BASE + "extra:" + "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(40)) + " 1\n", "<file>"
    # Values YAML itself cannot build, or that do not fit a float.
    yield "unhashable-key", BASE + "? [a, b]\n: 1\n", "<file>"
    yield "set-key", BASE + "? !!set {a: null}\n: 1\n", "<file>"
    yield "5000-digit-integer", BASE + f"extra: {'1' * 5000}\n", "<file>"
    yield "400-digit-margin", text_of(changed("promotion.margin", 10**400)), "promotion.margin"
    yield "400-digit-threshold", text_of(changed("promotion.minimums.roc_auc", 10**400)), "promotion.minimums.roc_auc"
    # Bytes that are not UTF-8.
    yield "latin-1", BASE.replace("Customer churn classifier", "Clientes que se van \u2014 caf\u00e9").encode("latin-1", errors="replace"), "<file>"
    yield "binary", b"\xff\xfe\x00\x01" * 100, "<file>"
    yield "utf-16", BASE.encode("utf-16"), "<file>"
    # Names that must fully match.
    for bad in ("churn\n", "Churn", "churn_v2", "-churn", "churn-", "c" * 41, "churn extra", "1churn"):
        yield f"name-{bad[:12]!r}", text_of(changed("name", bad)), "name"
    # ${...} naming anything but MLOPS_* variables.
    for uri in ("${HOME}/data", "s3://bucket/${AWS_SECRET_ACCESS_KEY}", "${PATH:-/x}/events", "${AIRFLOW_CONN_MLFLOW_DEFAULT}"):
        yield f"env-{uri[:20]}", text_of(changed("data.uri", uri)), "data.uri"
    # Template syntax anywhere.
    for path, value in (
        ("data.uri", "/data/{{ var.value.secret }}/events"),
        ("data.predictions_uri", "/data/{% for x in y %}{% endfor %}"),
        ("description", "{{ conn.mlflow_default.password }}"),
        ("owner", "{# comment #}team"),
        ("training.compute.image", "ghcr.io/x:{{ ds }}"),
        ("serving.kubernetes.namespace", "{{ macros.datetime.now() }}"),
    ):
        yield f"template-{path}", text_of(changed(path, value)), path
    tags = churn_spec_raw()
    tags["tags"] = ["churn", "{{ ti.xcom_pull('x') }}"]
    yield "template-in-a-list", text_of(tags), "tags[1]"
    # Contract dtypes that contradict the feature lists.
    yield "numeric-feature-as-string", text_of(changed("contract.columns.tenure_months", {"dtype": "string"})), "contract.columns.tenure_months.dtype"
    yield "categorical-feature-as-float", text_of(changed("contract.columns.region", {"dtype": "float"})), "contract.columns.region.dtype"
    yield "target-as-string", text_of(changed("contract.columns.churned", {"dtype": "string"})), "contract.columns.churned.dtype"
    yield "timestamp-as-string", text_of(changed("contract.columns.event_ts", {"dtype": "string"})), "contract.columns.event_ts.dtype"


CASES = list(cases())


def test_the_corpus_is_large():
    assert len(CASES) >= 100
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("content", "field"), [pytest.param(content, field, id=case_id) for case_id, content, field in CASES])
def test_a_hostile_spec_is_refused_naming_its_field(tmp_path, content, field):
    path = tmp_path / "churn.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ModelSpecError) as refused:
        load_spec(path)
    assert refused.value.source == str(path)
    assert refused.value.field == field, str(refused.value)
    assert len(str(refused.value)) < 600, "error messages cut long values"


def test_the_spec_and_legitimate_edge_values_load(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA_ROOT", str(tmp_path))
    for path, value in (("serving.drain_seconds", 24 * 3600), ("training.window_days", 3650), ("promotion.margin", 0.0), ("drift.timeout_minutes", 0)):
        raw = changed(path, value)
        (tmp_path / "churn.yaml").write_text(text_of(raw))
        spec = load_spec(tmp_path / "churn.yaml")
        assert spec.data.uri == f"file://{tmp_path}/churn/events"
    unchanged = copy.deepcopy(churn_spec_raw())
    (tmp_path / "churn.yaml").write_text(text_of(unchanged))
    assert load_spec(tmp_path / "churn.yaml").name == "churn"


def test_spec_text_from_the_environment_that_is_not_utf8_is_refused():
    """A pod gets its spec as an environment variable: undecodable bytes arrive as surrogates."""
    from mlops_airflow.specs import load_spec_text

    text = BASE.encode().replace(b"Customer", b"Cust\xffomer").decode("utf-8", errors="surrogateescape")
    with pytest.raises(ModelSpecError, match="MLOPS_MODEL_SPEC: <file>: is not UTF-8 text"):
        load_spec_text(text, source="MLOPS_MODEL_SPEC")
