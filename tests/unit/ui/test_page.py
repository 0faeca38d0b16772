"""The page's HTML: what each part shows, and that nothing from a spec, the registry or a run is taken as markup."""

from __future__ import annotations

from html.parser import HTMLParser

from mlops_airflow.ui.overview import ColorCard, DriftPoint, DriftSeries, Link, ModelOverview, RunRow, ServingCard, VersionCard
from mlops_airflow.ui.page import render_page

HOSTILE = '<img src=x onerror="alert(1)">'


class Elements(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def overview(**changes) -> ModelOverview:
    base = ModelOverview(
        name="churn",
        versions=[
            VersionCard(
                alias="champion",
                version="2",
                run_id="r2",
                decision="promoted",
                decided_at="2026-12-01T10:00:00+00:00",
                decided_by="admin",
                window="2026-11-03..2026-12-01",
                reasons="all gates passed",
                gates=[{"name": "roc_auc_min", "passed": True, "detail": "0.81 >= 0.70"}, {"name": "segments", "passed": False, "detail": "EU dropped"}],
                run_link=Link("MLflow run of v2", "http://mlflow:5000/#/experiments/1/runs/r2"),
            )
        ],
        serving=ServingCard(
            "local", "green", "2", "http://127.0.0.1:5001/invocations", [ColorCard("blue", "1", True, 10, ""), ColorCard("green", "2", True, 90, "")]
        ),
        drift=[DriftSeries("tenure", [DriftPoint("2026-11-30", 0.01)], [DriftPoint("2026-11-30", 0.2)])],
        drift_alpha=0.05,
        runs=[RunRow("retrain_churn", "manual__2026-12-01T10:00:00+00:00", "manual", "success", "2026-12-01T10:00:00+00:00", None)],
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_each_part_of_a_model_is_on_the_page():
    html = render_page([overview()], [], airflow_root="")
    assert "<h1>Models (1)</h1>" in html
    assert "champion: v2" in html
    assert "roc_auc_min" in html
    assert '<td class="fail">FAIL</td><td>EU dropped</td>' in html
    assert "green (v2)" in html
    assert "http://127.0.0.1:5001/invocations" in html
    assert "90 %" in html
    assert html.count("<polyline") == 2  # p-value and effect of the one feature
    links = [attrs for tag, attrs in Elements(html).tags if tag == "a"]
    run_link = next(a for a in links if "/dags/" in (a["href"] or ""))
    assert run_link["href"] == "/dags/retrain_churn/runs/manual__2026-12-01T10%3A00%3A00%2B00%3A00"
    assert run_link["target"] == "_top"  # leaves the UI's frame for Airflow's own run page


def test_a_promoted_challenger_is_not_shown_twice_and_an_idle_colour_is_not_an_error():
    promoted = overview()
    promoted.versions.append(promoted.versions[0].__class__(**{**promoted.versions[0].__dict__, "alias": "challenger"}))
    promoted.serving = ServingCard("local", "green", "2", None, [ColorCard("blue", "1", False, None, "not running"), ColorCard("green", "2", True, None, "")])
    html = render_page([promoted], [], airflow_root="")
    assert html.count("roc_auc_min") == 1
    assert 'challenger: v2</h4><p class="muted">the champion' in html
    assert '<td class="muted">idle</td>' in html
    assert '<td class="fail">not ready</td>' not in html


def test_links_to_runs_follow_airflows_base_path():
    html = render_page([overview()], [], airflow_root="/airflow")
    assert 'href="/airflow/dags/retrain_churn/runs/' in html


def test_nothing_from_specs_registry_or_runs_becomes_markup():
    hostile = overview(
        name=HOSTILE,
        description=HOSTILE,
        errors={"serving": HOSTILE},
        runs=[RunRow(HOSTILE, HOSTILE, "manual", HOSTILE, None, None)],
        drift=[DriftSeries(HOSTILE, [DriftPoint("2026-11-30", 0.01)], [])],
    )
    hostile.versions[0] = VersionCard(
        "champion", HOSTILE, "r", HOSTILE, None, HOSTILE, None, HOSTILE, [{"name": HOSTILE, "passed": True, "detail": HOSTILE}], None
    )
    html = render_page([hostile], [f"bad.yaml: {HOSTILE}"], airflow_root="")
    assert [tag for tag, _ in Elements(html).tags if tag in ("img", "script")] == []
    assert "onerror" not in [name for _, attrs in Elements(html).tags for name in attrs]


def test_empty_and_broken_states_read_as_sentences():
    html = render_page(
        [overview(versions=[], serving=None, drift=[], runs=[], errors={"registry": "OSError: down"})],
        ["x.yaml: serving.local.live_port: is taken by churn"],
        airflow_root="",
    )
    assert "Spec not loaded: x.yaml: serving.local.live_port: is taken by churn" in html
    assert "registry: OSError: down" in html
    assert "No champion" not in html  # the registry's error says why, not "no versions"
    assert "no checks recorded yet" in html
    assert "No runs." in html
    assert "No model specs found" in render_page([], [], airflow_root="")
