"""``python -m mlops_airflow.embedded``: its arguments, and the commands that start nothing on an empty state folder."""

from __future__ import annotations

import pytest

from mlops_airflow.embedded.__main__ import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "the following arguments are required: command", id="no-command"),
        pytest.param(["start"], "invalid choice: 'start'", id="unknown-command"),
        pytest.param(["status", "--verbose"], "unrecognized arguments: --verbose", id="unknown-option"),
        pytest.param(["demo", "--model"], "--model: expected one argument", id="model-without-name"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def empty_state(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("MLOPS_STATE_DIR", str(state))
    monkeypatch.delenv("MLOPS_STACK_OWNER_PID", raising=False)
    monkeypatch.chdir(tmp_path)  # the checkout the stack would run: one without model specs
    return state


@pytest.mark.parametrize(
    ("database", "services"),
    [pytest.param("sqlite", ["mlflow", "airflow"], id="sqlite"), pytest.param("postgres", ["postgres", "mlflow", "airflow"], id="postgres")],
)
def test_status_of_a_stack_never_started(empty_state, monkeypatch, capsys, database, services):
    monkeypatch.setenv("MLOPS_EMBEDDED_DATABASE", database)
    assert main(["status"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{name}: stopped" for name in services]


def test_down_with_nothing_running(empty_state, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_EMBEDDED_DATABASE", "sqlite")
    assert main(["down"]) == 0
    assert capsys.readouterr().out == "nothing of ours was running\n"
