"""The embedded stack's copies of the specs, per workload profile, checked by loading them."""

from __future__ import annotations

import pytest
from helpers import REPO_ROOT

from mlops_airflow.embedded.profiles import PROFILE_ENV, profile_name
from mlops_airflow.embedded.stack import EmbeddedStack, StackConfig
from mlops_airflow.specs import load_spec


def written_churn_spec(tmp_path, monkeypatch, profile: str | None):
    if profile is None:
        monkeypatch.delenv(PROFILE_ENV, raising=False)
    else:
        monkeypatch.setenv(PROFILE_ENV, profile)
    config = StackConfig(repo_root=REPO_ROOT, state_dir=tmp_path)
    EmbeddedStack(config, echo=lambda _: None).write_specs()
    assert not list(config.specs_dir.glob("*.tmp"))
    return load_spec(config.specs_dir / "churn.yaml")


def test_the_default_profile_keeps_the_spec_but_the_weekly_retrain(tmp_path, monkeypatch):
    original = load_spec(REPO_ROOT / "include" / "models" / "churn.yaml")
    written = written_churn_spec(tmp_path, monkeypatch, None)
    assert original.schedules.retrain is not None
    assert written.schedules.retrain is None
    assert written.serving == original.serving
    assert written.promotion == original.promotion


def test_the_quick_profile_drains_for_a_second_runs_one_worker_and_loosens_only_the_latency_gate(tmp_path, monkeypatch):
    original = load_spec(REPO_ROOT / "include" / "models" / "churn.yaml")
    written = written_churn_spec(tmp_path, monkeypatch, "quick")
    assert written.schedules.retrain is None
    assert written.serving.drain_seconds == 1
    assert written.serving.smoke.max_p95_ms == 30_000
    assert (original.serving.capacity.workers, written.serving.capacity.workers) == (None, 1)  # None: one per CPU
    assert written.serving.capacity.max_pending == original.serving.capacity.max_pending
    assert written.serving.smoke.max_error_rate == original.serving.smoke.max_error_rate
    assert written.serving.smoke.golden_rows == original.serving.smoke.golden_rows
    assert written.promotion == original.promotion


def test_an_unknown_profile_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"MLOPS_EMBEDDED_PROFILE='fast' is not a profile; choose one of demo, quick"):
        profile_name({PROFILE_ENV: "fast"})
