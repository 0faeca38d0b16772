"""The performance demo's parts that need no stack: the late labels it writes, the days it scores, its table."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa

from mlops_airflow.core.partitions import write_partition
from mlops_airflow.embedded.demo import DEMO_ROWS_PER_DAY
from mlops_airflow.embedded.performance_demo import day_lines, unscored_days, write_late_labels
from mlops_airflow.embedded.synthetic import DriftSettings, generate_day

DAY = dt.date(2026, 2, 10)


def demo_spec(tmp_path):
    return SimpleNamespace(
        performance=SimpleNamespace(labels_uri=f"file://{tmp_path}/labels"),
        data=SimpleNamespace(uri=f"file://{tmp_path}/events", predictions_uri=f"file://{tmp_path}/predictions"),
        target=SimpleNamespace(column="churned"),
    )


def test_late_labels_are_the_events_rows_with_changed_outcomes_and_reach_the_events(tmp_path):
    spec = demo_spec(tmp_path)
    second = DAY + dt.timedelta(days=1)
    events = generate_day(second, rows=DEMO_ROWS_PER_DAY)
    write_partition(pa.Table.from_pandas(events, preserve_index=False), spec.data.uri, second)
    write_late_labels(spec, [DAY, second], outcomes=DriftSettings(start=DAY, features=(), change_label_relationship=False, concept=1.0))
    labels = pd.read_parquet(tmp_path / "labels" / "dt=2026-02-11" / "labels.parquet")
    assert labels["customer_id"].tolist() == events["customer_id"].tolist()
    changed = (labels["churned"] != events["churned"]).mean()
    assert 0.05 < changed < 0.5, changed  # outcomes moved, not replaced by noise
    # The training table learns the new outcomes; nothing else of the events moved.
    updated = pd.read_parquet(tmp_path / "events" / "dt=2026-02-11" / "part-0.parquet")
    assert updated["churned"].tolist() == labels["churned"].tolist()
    pd.testing.assert_frame_equal(updated.drop(columns=["churned"]), events.drop(columns=["churned"]))
    assert not (tmp_path / "events" / "dt=2026-02-10").exists()  # no events that day: none are made up
    write_late_labels(spec, [DAY], outcomes=None)
    assert (
        pd.read_parquet(tmp_path / "labels" / "dt=2026-02-10" / "labels.parquet")["churned"].tolist()
        == generate_day(DAY, rows=DEMO_ROWS_PER_DAY)["churned"].tolist()
    )


def test_days_scored_by_another_version_or_not_at_all_are_scored_again(tmp_path):
    spec = demo_spec(tmp_path)
    for day, version in ((DAY, "2"), (DAY + dt.timedelta(days=1), "1")):
        table = pa.table({"customer_id": ["a"], "model_version": [version]})
        write_partition(table, spec.data.predictions_uri, day, "predictions.parquet")
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    assert unscored_days(spec, days, "2") == days[1:]


def test_the_table_has_a_line_per_day_and_dashes_for_what_is_not_known():
    summary = {
        "days": [
            {
                "day": "2026-02-10",
                "predictions": 2000,
                "labelled": 2000,
                "estimated": {"roc_auc": 0.81},
                "realized": {"roc_auc": 0.62},
                "prediction_shift": 0.012,
                "concept_drift": True,
            },
            {
                "day": "2026-02-11",
                "predictions": 2000,
                "labelled": 0,
                "estimated": {"roc_auc": 0.8},
                "realized": None,
                "prediction_shift": None,
                "concept_drift": None,
            },
        ]
    }
    header, first, second = day_lines(summary)
    assert "estimated AUC" in header
    assert first.split() == ["2026-02-10", "2000", "2000", "0.810", "0.620", "0.012", "yes"]
    assert second.split() == ["2026-02-11", "2000", "0", "0.800", "-", "-", "-"]
