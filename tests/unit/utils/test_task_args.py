"""Task arguments: dates, flags and the spec path; a bad value fails the task without retries, naming the argument."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowFailException
from helpers import CHURN_SPEC, churn_spec_raw, write_spec

from mlops_airflow.utils.task_args import as_bool, as_date, as_utc_datetime, load_task_spec

UTC = dt.UTC


class TestLoadTaskSpec:
    def test_a_valid_spec(self):
        assert load_task_spec(str(CHURN_SPEC)).name == "churn"

    def test_an_invalid_spec_fails_without_retry_naming_the_field(self, tmp_path):
        raw = churn_spec_raw()
        raw["promotion"]["margin"] = "big"
        path = write_spec(raw, tmp_path)
        with pytest.raises(AirflowFailException, match=rf"{path}: promotion\.margin"):
            load_task_spec(str(path))

    def test_a_missing_file_fails_without_retry(self, tmp_path):
        with pytest.raises(AirflowFailException, match=rf"{tmp_path}/gone\.yaml: <file>: cannot be read"):
            load_task_spec(str(tmp_path / "gone.yaml"))


class TestAsDate:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(dt.date(2026, 3, 1), id="date"),
            pytest.param(dt.datetime(2026, 3, 1, 23, 59, tzinfo=UTC), id="datetime"),
            pytest.param("2026-03-01", id="iso"),
            pytest.param(" 2026-03-01 ", id="padded"),
            pytest.param("2026-03-01T23:00:00+00:00", id="timestamp"),
        ],
    )
    def test_values(self, value):
        assert as_date(value, "window_end") == dt.date(2026, 3, 1)

    @pytest.mark.parametrize(
        ("value", "match"),
        [
            pytest.param("", r"window_end: expected a date \(YYYY-MM-DD\), got ''", id="empty"),
            pytest.param("yesterday", r"window_end: expected a date \(YYYY-MM-DD\), got 'yesterday'", id="word"),
            pytest.param("2026-02-30", r"window_end: expected a date \(YYYY-MM-DD\), got '2026-02-30'", id="no-such-day"),
            pytest.param(None, r"window_end: expected a date \(YYYY-MM-DD\), got None", id="none"),
        ],
    )
    def test_refusals(self, value, match):
        with pytest.raises(AirflowFailException, match=match):
            as_date(value, "window_end")


class TestAsUtcDatetime:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(dt.datetime(2026, 3, 1, 6), dt.datetime(2026, 3, 1, 6, tzinfo=UTC), id="naive-datetime-is-utc"),
            pytest.param(dt.datetime(2026, 3, 1, 6, tzinfo=UTC), dt.datetime(2026, 3, 1, 6, tzinfo=UTC), id="utc-datetime"),
            pytest.param(dt.date(2026, 3, 1), dt.datetime(2026, 3, 1, tzinfo=UTC), id="date-is-its-midnight"),
            pytest.param("2026-03-01", dt.datetime(2026, 3, 1, tzinfo=UTC), id="iso-date"),
            pytest.param("2026-03-01T06:30:00", dt.datetime(2026, 3, 1, 6, 30, tzinfo=UTC), id="naive-timestamp"),
            pytest.param("2026-03-01T06:30:00+00:00", dt.datetime(2026, 3, 1, 6, 30, tzinfo=UTC), id="utc-timestamp"),
            pytest.param("2026-03-01T06:30:00Z", dt.datetime(2026, 3, 1, 6, 30, tzinfo=UTC), id="zulu"),
            pytest.param(" 2026-03-01 06:30 ", dt.datetime(2026, 3, 1, 6, 30, tzinfo=UTC), id="padded-with-space"),
        ],
    )
    def test_values(self, value, expected):
        moment = as_utc_datetime(value, "interval_start")
        assert moment == expected
        assert moment.utcoffset() == dt.timedelta(0)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("2026-03-01T01:00:00+02:00", dt.datetime(2026, 2, 28, 23), id="east-of-utc-is-the-day-before"),
            pytest.param("2026-02-28T20:00:00-05:00", dt.datetime(2026, 3, 1, 1), id="west-of-utc-is-the-day-after"),
            pytest.param(dt.datetime(2026, 3, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.datetime(2026, 2, 28, 23), id="aware-datetime"),
        ],
    )
    def test_an_offset_is_converted_to_utc(self, value, expected):
        """Callers take ``.date()`` of the result: it must be the UTC day, not the local one."""
        moment = as_utc_datetime(value, "interval_start")
        assert moment.utcoffset() == dt.timedelta(0)
        assert (moment.date(), moment.replace(tzinfo=None)) == (expected.date(), expected)

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("", id="empty"),
            pytest.param("2026-3-1", id="not-iso"),
            pytest.param("2026-03-01T25:00:00", id="no-such-hour"),
            pytest.param(None, id="none"),
        ],
    )
    def test_refusals(self, value):
        with pytest.raises(AirflowFailException, match=rf"interval_start must be a date or an ISO timestamp, got {value!r}"):
            as_utc_datetime(value, "interval_start")


class TestAsBool:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(True, True, id="True"),
            pytest.param(False, False, id="False"),
            pytest.param(None, False, id="None"),
            pytest.param(1, True, id="1"),
            pytest.param(0, False, id="0"),
            pytest.param("True", True, id="rendered-True"),
            pytest.param(" true ", True, id="padded"),
            pytest.param("1", True, id="text-1"),
            pytest.param("yes", True, id="yes"),
            pytest.param("ON", True, id="ON"),
            pytest.param("False", False, id="rendered-False"),
            pytest.param("0", False, id="text-0"),
            pytest.param("no", False, id="no"),
            pytest.param("", False, id="empty"),
            pytest.param("None", False, id="rendered-None"),
        ],
    )
    def test_values(self, value, expected):
        assert as_bool(value) is expected
