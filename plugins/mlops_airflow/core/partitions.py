"""Daily Parquet partitions: ``<base uri>/dt=YYYY-MM-DD/<file>.parquet``.

Used by the training entrypoint (which may run in a pod without Airflow), the data
generator and the scoring task, so it speaks pyarrow's filesystems, not Airflow's.
Heavy imports stay inside functions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_airflow.constants import PARTITION_DATE_FORMAT, PARTITION_KEY

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day in the half-open window ``[start, end)``."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def parse_day(value: object) -> dt.date:
    """A date from a ``date``, a ``datetime`` or an ISO string (a timestamp's date part counts)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValueError(f"expected a date (YYYY-MM-DD), got {value!r}") from None


def partition_uri(base_uri: str, day: dt.date) -> str:
    return f"{base_uri.rstrip('/')}/{PARTITION_KEY}={day.strftime(PARTITION_DATE_FORMAT)}"


def _filesystem(uri: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


@dataclass(frozen=True)
class WindowData:
    """The rows of a window and which of its days had a partition."""

    frame: pd.DataFrame
    present_days: tuple[dt.date, ...]
    missing_days: tuple[dt.date, ...]


def list_partition_files(base_uri: str, day: dt.date) -> list[str]:
    """Paths (in the filesystem's own terms) of the Parquet files of one day's partition."""
    from pyarrow import fs

    filesystem, path = _filesystem(partition_uri(base_uri, day))
    info = filesystem.get_file_info(path)
    if info.type != fs.FileType.Directory:
        return []
    selector = fs.FileSelector(path, recursive=False)
    return sorted(f.path for f in filesystem.get_file_info(selector) if f.type == fs.FileType.File and f.base_name.endswith(".parquet"))


def read_window(base_uri: str, start: dt.date, end: dt.date, columns: list[str] | None = None) -> WindowData:
    """Read every partition of ``[start, end)`` into one DataFrame with a ``dt`` date column."""
    import pandas as pd
    import pyarrow.parquet as pq

    filesystem, _ = _filesystem(base_uri)
    frames, present, missing = [], [], []
    for day in days_between(start, end):
        files = list_partition_files(base_uri, day)
        if not files:
            missing.append(day)
            continue
        present.append(day)
        for path in files:
            frame = pq.read_table(path, filesystem=filesystem, columns=columns).to_pandas()
            frame[PARTITION_KEY] = day
            frames.append(frame)
    combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*(columns or []), PARTITION_KEY])
    return WindowData(frame=combined, present_days=tuple(present), missing_days=tuple(missing))


def write_partition(table: pa.Table, base_uri: str, day: dt.date, filename: str = "part-0.parquet") -> str:
    """Write one partition file atomically: a hidden temporary file, then a rename.

    A reader never sees a half-written file, and re-running replaces the file whole,
    so the write is idempotent. Returns the final URI.
    """
    import pyarrow.parquet as pq

    folder_uri = partition_uri(base_uri, day)
    filesystem, folder = _filesystem(folder_uri)
    filesystem.create_dir(folder, recursive=True)
    final = f"{folder}/{filename}"
    temporary = f"{folder}/.{filename}.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, temporary, filesystem=filesystem)
        filesystem.move(temporary, final)
    finally:
        from pyarrow import fs

        # A failed clean-up after a move that succeeded must not report the write as failed
        # (the inference log would write those rows again under another name).
        with contextlib.suppress(OSError):
            if filesystem.get_file_info(temporary).type != fs.FileType.NotFound:
                filesystem.delete_file(temporary)
    return f"{folder_uri}/{filename}"


def read_period(base_uri: str, start: dt.datetime, end: dt.datetime, *, time_column: str = "ts", columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of the daily partitions whose ``time_column`` (UTC) falls in ``[start, end)``: the inference log's reader."""
    frame = read_window(base_uri, start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date() + dt.timedelta(days=1), columns).frame
    if frame.empty:
        return frame
    times = frame[time_column]
    return frame[(times >= start) & (times < end)].reset_index(drop=True)
