"""The page's SVG charts: points where the data says, names escaped, an empty history said in words."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mlops_airflow.ui.charts import line_chart


def test_one_polyline_per_series_in_date_order_with_the_threshold_dashed():
    svg = line_chart(
        {"age": [("2026-01-01", 0.5), ("2026-01-03", 1e-6)], "tenure": [("2026-01-02", 0.2)]},
        title="p-value per feature",
        log_scale=True,
        threshold=0.05,
    )
    root = ET.fromstring(svg)  # well-formed XML
    lines = root.findall("{http://www.w3.org/2000/svg}polyline") or root.findall("polyline")
    assert [line.find("title").text for line in lines] == ["age", "tenure"]
    age = [tuple(map(float, point.split(","))) for point in lines[0].get("points").split()]
    assert age[0][0] < age[1][0]  # later day further right
    assert age[0][1] < age[1][1]  # log10(1e-6) is lower on the chart than log10(0.5)
    assert 'stroke-dasharray="4 3"' in svg
    assert "2026-01-01" in svg
    assert "2026-01-03" in svg


def test_a_zero_p_value_is_drawn_at_the_floor_instead_of_failing():
    svg = line_chart({"x": [("2026-01-01", 0.0), ("2026-01-02", 0.3)]}, title="t", log_scale=True)
    assert "1e-12" in svg


def test_names_and_titles_are_escaped():
    svg = line_chart({"<script>alert(1)</script>": [("2026-01-01", 0.1)]}, title='a "title" & <b>')
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    ET.fromstring(svg)


def test_no_points_says_so():
    svg = line_chart({"x": []}, title="effect")
    assert "no checks recorded yet" in svg
    assert not re.search(r"<polyline", svg)
