"""The inference log's writer: sampling, bounds, day partitions, atomic files, a failed write kept for the next try."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops_airflow.core.partitions import read_period, read_window
from mlops_airflow.serving.inference_log import COLUMNS, InferenceLog, InferenceLogSettings, model_and_version, request_id

NOON = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC).timestamp()


def make(tmp_path, **kwargs) -> InferenceLog:
    settings = InferenceLogSettings(uri=(tmp_path / "log").as_uri(), sample_rate=kwargs.pop("sample_rate", 1.0))
    return InferenceLog(settings, model="churn", version="3", color="green", **kwargs)


def record(log: InferenceLog, arrived: float = NOON, status: int = 200, body: bytes = b'{"x": 1}', rid: str = "r") -> bool:
    return log.record(
        arrived=arrived,
        request_id=rid,
        status=status,
        latency_ms=4.5,
        content_type="application/json",
        request=body,
        response=b'{"predictions": [[0.2, 0.8]]}',
        route="live",
    )


class TestRecordAndFlush:
    def test_rows_are_written_with_every_column(self, tmp_path):
        log = make(tmp_path)
        assert record(log, rid="a")
        assert record(log, status=503, body=b"", rid="b")
        assert log.flush() == 2
        rows = read_window(log.settings.uri, dt.date(2026, 3, 2), dt.date(2026, 3, 3)).frame
        assert list(rows.columns) == [*COLUMNS, "dt"]
        assert rows["request_id"].tolist() == ["a", "b"]
        assert rows["status"].tolist() == [200, 503]
        assert set(rows["color"]) == {"green"}
        assert set(rows["version"]) == {"3"}
        assert bytes(rows["request"][1]) == b""
        assert rows["ts"][0] == dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
        assert log.stats() == {"logged": 2, "written": 2, "dropped": 0, "sampled_out": 0, "write_errors": 0}

    def test_each_row_goes_to_the_day_it_arrived_utc(self, tmp_path):
        log = make(tmp_path)
        record(log, arrived=NOON)
        record(log, arrived=NOON + 86400)
        log.flush()
        for day in (dt.date(2026, 3, 2), dt.date(2026, 3, 3)):
            assert len(read_window(log.settings.uri, day, day + dt.timedelta(days=1)).frame) == 1

    def test_a_period_is_read_back_to_the_microsecond(self, tmp_path):
        log = make(tmp_path)
        for second in range(10):
            record(log, arrived=NOON + second, rid=str(second))
        log.flush()
        start = dt.datetime.fromtimestamp(NOON + 3, dt.UTC)
        rows = read_period(log.settings.uri, start, start + dt.timedelta(seconds=4))
        assert rows["request_id"].tolist() == ["3", "4", "5", "6"]

    def test_nothing_buffered_writes_no_file(self, tmp_path):
        log = make(tmp_path)
        assert log.flush() == 0
        assert not (tmp_path / "log").exists()

    def test_no_temporary_file_is_left_and_files_never_clash(self, tmp_path):
        log = make(tmp_path)
        for _ in range(3):
            record(log)
            log.flush()
        names = [p.name for p in (tmp_path / "log").rglob("*") if p.is_file()]
        assert len(names) == len(set(names)) == 3
        assert all(n.endswith(".parquet") and not n.startswith(".") for n in names)


class TestBounds:
    def test_past_the_row_bound_rows_are_dropped_and_counted_not_queued(self, tmp_path):
        log = make(tmp_path, max_buffer_rows=3)
        assert [record(log) for _ in range(5)] == [True, True, True, False, False]
        assert (log.logged, log.dropped, len(log.buffer)) == (3, 2, 3)

    def test_past_the_byte_bound_likewise(self, tmp_path):
        log = make(tmp_path, max_buffer_bytes=1000)
        assert record(log, body=b"x" * 500)
        assert not record(log, body=b"x" * 500)

    @pytest.mark.parametrize(("rate", "draws", "kept"), [(0.5, [0.1, 0.7, 0.49, 0.5], 2), (1.0, [0.99, 0.0], 2)])
    def test_sampling_keeps_the_configured_share(self, tmp_path, rate, draws, kept):
        draws = iter(draws)
        log = make(tmp_path, sample_rate=rate, sample=lambda: next(draws))
        results = [record(log) for _ in range(2 if rate == 1.0 else 4)]
        assert sum(results) == kept
        assert log.sampled_out == len(results) - kept


class TestFailures:
    def test_a_failed_write_keeps_its_rows_for_the_next_try(self, tmp_path, monkeypatch, capsys):
        log = make(tmp_path)
        record(log, rid="a")
        monkeypatch.setattr(log, "_write", lambda day, rows: (_ for _ in ()).throw(OSError("disk full")))
        assert log.flush() == 0
        assert "cannot write 1 rows" in capsys.readouterr().err
        assert log.write_errors == 1
        monkeypatch.undo()
        record(log, rid="b")
        assert log.flush() == 2
        assert sorted(read_window(log.settings.uri, dt.date(2026, 3, 2), dt.date(2026, 3, 3)).frame["request_id"]) == ["a", "b"]

    def test_days_written_before_a_failure_are_not_written_twice(self, tmp_path, monkeypatch):
        log = make(tmp_path)
        record(log, arrived=NOON, rid="day1")
        record(log, arrived=NOON + 86400, rid="day2")
        real = log._write

        def fail_on_second_day(day, rows):
            if day == dt.date(2026, 3, 3):
                raise OSError("gone")
            real(day, rows)

        monkeypatch.setattr(log, "_write", fail_on_second_day)
        assert log.flush() == 1
        monkeypatch.undo()
        assert log.flush() == 1
        rows = read_window(log.settings.uri, dt.date(2026, 3, 2), dt.date(2026, 3, 4)).frame
        assert sorted(rows["request_id"]) == ["day1", "day2"]


class TestThread:
    def test_close_writes_what_is_left(self, tmp_path):
        log = make(tmp_path)
        log.start()
        record(log)
        assert log.close() == 1
        assert log.written == 1

    def test_a_full_buffer_wakes_the_thread_before_its_interval(self, tmp_path):
        settings = InferenceLogSettings(uri=(tmp_path / "log").as_uri(), flush_seconds=3600)
        log = InferenceLog(settings, model="churn", version="3", color="blue", flush_rows=2)
        log.start()
        record(log)
        record(log)
        for _ in range(200):
            if log.written == 2:
                break
            import time

            time.sleep(0.02)
        assert log.written == 2
        log.close()


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param(b"abc-123", True, id="token"),
        pytest.param(b"x" * 129, False, id="too-long"),
        pytest.param(b"a b", False, id="space"),
        pytest.param(b"a\nb", False, id="newline"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_a_request_id_is_the_clients_when_it_is_a_plain_token(given, kept):
    rid = request_id({b"x-request-id": given})
    assert (rid == given.decode()) is kept
    assert len(rid) <= 128


@pytest.mark.parametrize(
    ("uri", "parts"), [("models:/churn/3", ("churn", "3")), ("file:///tmp/model", ("unknown", "unknown")), ("models:/churn@champion", ("unknown", "unknown"))]
)
def test_model_and_version_from_a_uri(uri, parts):
    assert model_and_version(uri) == parts


@pytest.mark.parametrize(
    "settings", [{"uri": ""}, {"uri": "file:///x", "sample_rate": 0}, {"uri": "file:///x", "sample_rate": 1.5}, {"uri": "file:///x", "flush_seconds": 0}]
)
def test_settings_refuse_nonsense(settings):
    with pytest.raises(ValueError, match="inference log needs"):
        InferenceLogSettings(**settings)


def test_settings_travel_as_arguments_and_environment():
    settings = InferenceLogSettings(uri="s3://bucket/log", sample_rate=0.25, flush_seconds=5)
    assert settings.arguments() == ["--inference-log", "s3://bucket/log", "--inference-log-sample-rate", "0.25", "--inference-log-flush-seconds", "5"]
    assert settings.environment() == {
        "MLOPS_INFERENCE_LOG_URI": "s3://bucket/log",
        "MLOPS_INFERENCE_LOG_SAMPLE_RATE": "0.25",
        "MLOPS_INFERENCE_LOG_FLUSH_SECONDS": "5",
    }
