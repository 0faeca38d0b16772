"""The docs site's sources: the files it includes exist and are included whole (a formatter once mangled a marker silently)."""

from __future__ import annotations

import re

from helpers import REPO_ROOT

MARKER = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')


def snippet_lines() -> list[tuple[str, str]]:
    return [(page.name, line) for page in sorted((REPO_ROOT / "docs").glob("*.md")) for line in page.read_text().splitlines() if "8<" in line]


def test_every_include_is_a_well_formed_marker_of_an_existing_file():
    lines = snippet_lines()
    assert lines, "the docs include no file"
    for page, line in lines:
        match = MARKER.fullmatch(line)
        assert match, f"{page}: not a snippet marker: {line!r}"
        assert (REPO_ROOT / match["path"]).is_file(), f"{page}: {match['path']} does not exist"


def test_the_example_dag_and_the_demo_spec_are_included_from_their_files():
    included = {(page, MARKER.fullmatch(line)["path"]) for page, line in snippet_lines()}
    assert {("dags.md", "dags/example_new_champion.py"), ("model-spec.md", "include/models/churn.yaml")} <= included
