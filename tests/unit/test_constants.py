"""Values other processes and stored records rely on: decision tags in the registry, the training exit codes."""

from __future__ import annotations

from mlops_airflow.constants import Decision, TrainingBackend, TrainingExitCode


def test_decisions_are_stored_and_read_back_as_their_plain_values():
    """Version tags written by earlier releases must still read as the same decision."""
    assert {str(d) for d in Decision} == {"promoting", "promoted", "rejected", "invalid", "failed"}
    assert f"{Decision.PROMOTED}" == "promoted"  # what a tag value written with an f-string holds
    assert Decision("promoted") is Decision.PROMOTED
    assert Decision.PROMOTED == "promoted"


def test_training_exit_codes_are_distinct_shell_exit_codes():
    """The entrypoint exits with these and the operators map them back: no two may share a value."""
    codes = [int(code) for code in TrainingExitCode]
    assert len(set(codes)) == len(codes) == len(TrainingExitCode.__members__)
    assert TrainingExitCode.OK == 0
    assert all(0 <= code < 126 for code in codes)  # 126 and above mean "not run" or "killed by a signal" to a shell


def test_training_backends_are_the_spec_values():
    assert [str(b) for b in TrainingBackend] == ["local", "kubernetes", "docker"]
