from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    from test_dag_integrity import PARSE_TIMES

    if PARSE_TIMES:
        terminalreporter.section("DAG file parse times (fresh interpreter, network blocked)")
        for name, seconds in sorted(PARSE_TIMES.items()):
            terminalreporter.write_line(f"{name:<24} {seconds * 1000:8.1f} ms")
