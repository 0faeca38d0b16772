"""The Models page as HTML: one section per model; every value from the registry, specs or runs is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from mlops_airflow.ui.charts import line_chart
from mlops_airflow.ui.overview import ColorCard, Link, ModelOverview, ServingCard, VersionCard

STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #1b1b1b; background: #fff; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 19px; margin: 0 0 8px; } h3 { font-size: 15px; margin: 14px 0 6px; }
section.model { border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 16px; margin-bottom: 16px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px 10px; min-width: 240px; max-width: 420px; }
.card h4 { margin: 0 0 4px; font-size: 14px; }
table { border-collapse: collapse; font-size: 13px; } td, th { border-bottom: 1px solid #eee; padding: 3px 8px; text-align: left; vertical-align: top; }
.pass { color: #1a7f37; } .fail { color: #cf222e; font-weight: 600; } .muted { color: #6e7781; font-size: 12px; }
.error { background: #fff1f0; border: 1px solid #ffccc7; padding: 6px 8px; border-radius: 4px; font-size: 13px; }
.state-success { color: #1a7f37; } .state-failed { color: #cf222e; } .state-running, .state-queued { color: #9a6700; }
.chart-title { font-size: 12px; font-weight: 600; } .tick, .legend { font-size: 10px; fill: #57606a; }
"""


def render_page(overviews: Sequence[ModelOverview], spec_errors: Sequence[str], *, airflow_root: str) -> str:
    """The whole page; ``airflow_root`` is the path Airflow's own UI is served under (links to runs)."""
    body = [f"<h1>Models ({len(overviews)})</h1>"]
    body += [f'<p class="error">Spec not loaded: {escape(error)}</p>' for error in spec_errors]
    if not overviews and not spec_errors:
        body.append("<p>No model specs found, or none whose DAGs you may read.</p>")
    body += [_model(overview, airflow_root) for overview in overviews]
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Models</title><style>{STYLE}</style></head><body>{"".join(body)}</body></html>'


def _model(overview: ModelOverview, airflow_root: str) -> str:
    parts = [f'<section class="model" id="model-{escape(overview.name)}"><h2>{escape(overview.name)}</h2>']
    if overview.description:
        parts.append(f'<p class="muted">{escape(overview.description)}</p>')
    parts += [f'<p class="error">{escape(part)}: {escape(error)}</p>' for part, error in sorted(overview.errors.items())]
    parts.append("<h3>Registry</h3>")
    if overview.versions:
        champion = next((card.version for card in overview.versions if card.alias == "champion"), None)
        cards = [_same_as_champion(card) if card.alias != "champion" and card.version == champion else _version(card) for card in overview.versions]
        parts.append('<div class="cards">' + "".join(cards) + "</div>")
    elif "registry" not in overview.errors:
        parts.append("<p>No champion, challenger or previous champion yet.</p>")
    parts.append("<h3>Serving</h3>")
    parts.append(_serving(overview.serving) if overview.serving is not None else "<p>No serving status.</p>")
    parts.append("<h3>Drift</h3>")
    p_values = {series.feature: [(p.day, p.value) for p in series.p_value] for series in overview.drift}
    effects = {series.feature: [(p.day, p.value) for p in series.effect] for series in overview.drift}
    parts.append(line_chart(p_values, title="p-value per feature (log scale)", log_scale=True, threshold=overview.drift_alpha))
    parts.append(line_chart(effects, title="effect per feature (KS D, TVD, classifier AUC)"))
    if overview.reports:
        parts.append("<p>Evidently reports: " + ", ".join(_link(link) for link in overview.reports) + "</p>")
    parts.append("<h3>Recent runs</h3>")
    parts.append(_runs(overview, airflow_root))
    parts.append("</section>")
    return "".join(parts)


def _version(card: VersionCard) -> str:
    rows = [
        ("decision", card.decision or "not recorded"),
        ("decided", " by ".join(x for x in (card.decided_at, card.decided_by) if x) or "-"),
        ("window", card.window or "-"),
        ("reasons", card.reasons or "-"),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    gates = ""
    if card.gates:
        gates = (
            "<table><tr><th>gate</th><th></th><th>detail</th></tr>"
            + "".join(
                f'<tr><td>{escape(g["name"])}</td><td class="{"pass" if g["passed"] else "fail"}">{"pass" if g["passed"] else "FAIL"}</td><td>{escape(g["detail"])}</td></tr>'
                for g in card.gates
            )
            + "</table>"
        )
    link = f"<p>{_link(card.run_link)}</p>" if card.run_link else ""
    return f'<div class="card"><h4>{escape(card.alias)}: v{escape(card.version)}</h4><table>{table}</table>{gates}{link}</div>'


def _same_as_champion(card: VersionCard) -> str:
    """A challenger that was promoted is the champion: said once, not its table again."""
    return f'<div class="card"><h4>{escape(card.alias)}: v{escape(card.version)}</h4><p class="muted">the champion (see its card)</p></div>'


def _color_state(color: ColorCard, live: str | None) -> str:
    if color.ready:
        return '<td class="pass">ready</td>'
    if color.color == live:
        return '<td class="fail">not ready</td>'
    return '<td class="muted">idle</td>'  # a colour scaled down after a switch is the normal state


def _serving(card: ServingCard) -> str:
    live = f"{card.live} (v{card.live_version})" if card.live else "nothing live"
    url = f'<a href="{escape(card.live_url)}" target="_blank" rel="noopener">{escape(card.live_url)}</a>' if card.live_url else "-"
    colors = "".join(
        f"<tr><td>{escape(c.color)}</td><td>{escape('v' + c.version if c.version else '-')}</td>"
        f"{_color_state(c, card.live)}"
        f"<td>{'' if c.weight is None else f'{c.weight} %'}</td><td>{escape(c.detail)}</td></tr>"
        for c in card.colors
    )
    return (
        f"<table><tr><th>backend</th><td>{escape(card.backend)}</td></tr><tr><th>live</th><td>{escape(live)}</td></tr>"
        f"<tr><th>live URL</th><td>{url}</td></tr></table>"
        f"<table><tr><th>colour</th><th>version</th><th>state</th><th>traffic</th><th>detail</th></tr>{colors}</table>"
    )


def _runs(overview: ModelOverview, airflow_root: str) -> str:
    if not overview.runs:
        return "<p>No runs.</p>"
    rows = "".join(
        f'<tr><td>{escape(r.dag_id)}</td><td><a target="_top" href="{escape(airflow_root)}/dags/{quote(r.dag_id, safe="")}/runs/{quote(r.run_id, safe="")}">'
        f'{escape(r.run_id)}</a></td><td>{escape(r.run_type)}</td><td class="state-{escape(r.state)}">{escape(r.state)}</td>'
        f"<td>{escape(r.started or '-')}</td><td>{escape(r.ended or '-')}</td></tr>"
        for r in overview.runs
    )
    return f"<table><tr><th>DAG</th><th>run</th><th>type</th><th>state</th><th>started</th><th>ended</th></tr>{rows}</table>"


def _link(link: Link) -> str:
    return f'<a href="{escape(link.href)}" target="_blank" rel="noopener">{escape(link.label)}</a>'
