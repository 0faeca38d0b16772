import datetime as dt

import pytest

from mlops_airflow.settings import RETRY_DELAY_ENV, retry_delay


def test_retry_delay_defaults_to_two_minutes(monkeypatch):
    monkeypatch.delenv(RETRY_DELAY_ENV, raising=False)
    assert retry_delay() == dt.timedelta(minutes=2)


def test_retry_delay_from_the_environment(monkeypatch):
    monkeypatch.setenv(RETRY_DELAY_ENV, "3")
    assert retry_delay() == dt.timedelta(seconds=3)


@pytest.mark.parametrize("raw", ["soon", "0", "-5"])
def test_a_bad_retry_delay_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(RETRY_DELAY_ENV, raw)
    with pytest.raises(ValueError, match=RETRY_DELAY_ENV):
        retry_delay()
