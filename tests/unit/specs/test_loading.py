"""mlops_airflow.specs.loading: spec files and folders, and the clashes between specs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import CHURN_SPEC, churn_spec_raw, write_spec

from mlops_airflow.constants import TrainingBackend
from mlops_airflow.specs import ModelSpecError, find_spec, load_spec, load_spec_folder, load_specs


class TestLoadSpec:
    def test_demo_spec_loads(self, monkeypatch):
        monkeypatch.setenv("MLOPS_DATA_ROOT", "/srv/data")
        spec = load_spec(CHURN_SPEC)
        assert spec.name == "churn"
        assert spec.data.uri == "file:///srv/data/churn/events"
        assert spec.features.columns == (
            "tenure_months",
            "monthly_charges",
            "total_spend",
            "support_calls",
            "days_since_last_login",
            "contract",
            "region",
            "payment_method",
        )
        assert spec.target.classes == (0, 1)
        assert spec.training.backend is TrainingBackend.LOCAL
        assert spec.training.estimator.kind == "hist_gradient_boosting"
        assert spec.schedules.start_date == dt.date(2026, 1, 1)
        assert spec.schedules.drift_monitor == "@hourly"

    def test_load_specs_reads_the_folder_sorted(self, tmp_path):
        for name, live_port in (("zeta", 9100), ("alpha", 9200)):
            raw = churn_spec_raw()
            raw["name"] = name
            raw["serving"]["local"] = {"live_port": live_port}
            write_spec(raw, tmp_path, f"{name}.yaml")
        assert [s.name for s in load_specs(tmp_path)] == ["alpha", "zeta"]
        assert find_spec(tmp_path, "zeta").name == "zeta"

    def test_each_spec_loads_on_its_own(self, tmp_path):
        write_spec(churn_spec_raw(), tmp_path)
        (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["churn"]
        assert [(Path(e.source).name, e.field) for e in folder.errors] == [("bad.yaml", "<file>")]
        with pytest.raises(ModelSpecError, match=r"bad\.yaml"):
            load_specs(tmp_path)

    def test_the_same_name_twice_refuses_the_later_file(self, tmp_path):
        first = churn_spec_raw()
        first["serving"]["local"] = {"live_port": 9200}
        write_spec(first, tmp_path)
        raw = churn_spec_raw()
        raw["serving"]["local"] = {"live_port": 9300}
        write_spec(raw, tmp_path, "churn.yml")
        folder = load_spec_folder(tmp_path)
        assert [s.source for s in folder.specs] == [str(tmp_path / "churn.yaml")]
        assert "is already the name of" in str(folder.errors[0])
        assert folder.errors[0].source.endswith("churn.yml")

    def test_a_model_added_later_never_takes_the_ports_of_one_already_there(self, tmp_path):
        """Both take the default ports: the newer file is refused, whatever the names' order."""
        import os

        write_spec(churn_spec_raw(), tmp_path)
        raw = churn_spec_raw()
        raw["name"] = "abc"
        newer = write_spec(raw, tmp_path, "abc.yaml")
        os.utime(tmp_path / "churn.yaml", (1_000_000, 1_000_000))
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["churn"]
        assert folder.errors[0].source == str(newer)
        assert "set serving.local.live_port here" in folder.errors[0].problem

    def test_a_spec_that_sets_its_ports_keeps_them_against_one_that_takes_the_defaults(self, tmp_path, monkeypatch):
        import os

        monkeypatch.setenv("MLOPS_SERVING_LIVE_PORT", "9700")
        write_spec(churn_spec_raw(), tmp_path)  # its live port by default: 9700, from the environment
        raw = churn_spec_raw()
        raw["name"] = "zeta"
        raw["serving"]["local"] = {"live_port": 9699}  # 9699-9701: 9700 is churn's live port
        write_spec(raw, tmp_path, "zeta.yaml")
        os.utime(tmp_path / "churn.yaml", (1_000_000, 1_000_000))  # older, and still refused
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["zeta"]
        assert folder.errors[0].source.endswith("churn.yaml")

    def test_two_docker_models_cannot_share_a_live_port(self, tmp_path):
        for name in ("alpha", "beta"):
            raw = churn_spec_raw()
            raw["name"] = name
            raw["serving"]["backend"] = "docker"
            write_spec(raw, tmp_path, f"{name}.yaml")
        folder = load_spec_folder(tmp_path)
        assert [s.name for s in folder.specs] == ["alpha"]
        assert folder.errors[0].field == "serving.docker.live_port"

    def test_file_name_must_match(self, tmp_path):
        (tmp_path / "other.yaml").write_text(CHURN_SPEC.read_text())
        with pytest.raises(ModelSpecError, match=r"other\.yaml: name: must match the file name 'other'"):
            load_spec(tmp_path / "other.yaml")

    def test_missing_folder(self, tmp_path):
        with pytest.raises(ModelSpecError, match="does not exist"):
            load_specs(tmp_path / "nope")

    def test_missing_model(self, tmp_path):
        with pytest.raises(ModelSpecError, match="has no spec for model 'ghost'"):
            find_spec(tmp_path, "ghost")
