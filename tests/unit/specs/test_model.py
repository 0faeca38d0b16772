"""mlops_airflow.specs.model: the defaults a spec's dataclasses give the fields a spec leaves out."""

from __future__ import annotations

from helpers import churn_spec_raw

from mlops_airflow.specs import parse_spec


class TestValidation:
    def test_drift_defaults(self):
        raw = churn_spec_raw()
        del raw["drift"]
        drift = parse_spec(raw, source="s").drift
        assert (drift.features, drift.window_days, drift.alpha, drift.min_effect, drift.min_samples) == ((), 1, 0.05, 0.1, 500)
        assert drift.max_backfill_days == 31
