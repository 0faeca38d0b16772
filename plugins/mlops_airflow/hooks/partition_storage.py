"""Partitions on object storage: read a day's Parquet files, count their rows, quarantine them.

Everything goes through Airflow's ``ObjectStoragePath``, so ``file://``, ``s3://`` and ``gs://``
data roots work alike with the connection named in the spec. The data contract check
(:mod:`mlops_airflow.operators.data_checks`) and the contract benchmark read through here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.core.partitions import partition_uri

if TYPE_CHECKING:
    from mlops_airflow.core.contract_results import PartitionInput

QUARANTINE_FOLDER = "_quarantine"


def safe_name(value: str) -> str:
    """A run id as one path segment (run ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


def sha256(path: ObjectStoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_parquet(path: ObjectStoragePath, dictionary_columns: Sequence[str] = ()):
    """Read one Parquet file; local files take pyarrow's native reader (threads, no Python I/O).

    ``dictionary_columns`` (categoricals) are read dictionary-encoded: no string is materialised
    per row, and their distinct values are the dictionaries.
    """
    import pyarrow.parquet as pq

    options = {"read_dictionary": list(dictionary_columns)} if dictionary_columns else {}
    if path.protocol in ("file", "local", ""):
        return pq.read_table(path.path, **options)
    return pq.read_table(path.path, filesystem=path.fs, **options)


def read_partition(base_uri: str, day: dt.date, conn_id: str | None, dictionary_columns: Sequence[str] = ()) -> PartitionInput:
    """Read one day's Parquet files; what cannot be read becomes a finding, not a traceback."""
    import pyarrow as pa

    from mlops_airflow.core.contract_results import PartitionInput

    folder = ObjectStoragePath(partition_uri(base_uri, day), conn_id=conn_id)
    if not folder.exists():
        return PartitionInput(day=day, present=False)
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))), key=lambda p: p.name)
    if not files:
        return PartitionInput(day=day, present=False)
    names = tuple(p.name for p in files)
    tables = []
    for path in files:
        try:
            tables.append(read_parquet(path, dictionary_columns))
        except (pa.ArrowException, OSError, ValueError) as err:
            return PartitionInput(day=day, error=f"{path.name}: {err}", files=names)
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as err:
        return PartitionInput(day=day, error=f"files have different schemas: {err}", files=names)
    return PartitionInput(day=day, table=table, files=names)


def partition_row_count(base_uri: str, day: dt.date, conn_id: str | None) -> int:
    """Rows of a partition from the Parquet footers only; 0 when absent or unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = ObjectStoragePath(partition_uri(base_uri, day), conn_id=conn_id)
    if not folder.exists():
        return 0
    rows = 0
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith((".", "_")):
            try:
                with path.open("rb") as handle:
                    rows += pq.ParquetFile(handle).metadata.num_rows
            except (pa.ArrowException, OSError, ValueError):
                return 0
    return rows


def quarantine_partition(base_uri: str, day: dt.date, run_id: str, conn_id: str | None) -> dict[str, Any]:
    """Move a partition under ``_quarantine/<run_id>/`` and prove its bytes arrived unchanged.

    On a local filesystem the move is one atomic rename; on object storage it is the
    store's move, and the checksums after it are compared with those before.
    """
    source = ObjectStoragePath(partition_uri(base_uri, day), conn_id=conn_id)
    target = ObjectStoragePath(f"{base_uri.rstrip('/')}/{QUARANTINE_FOLDER}/{safe_name(run_id)}/{source.name}", conn_id=conn_id)
    before = {p.name: sha256(p) for p in source.iterdir() if p.is_file()}
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise AirflowFailException(f"quarantine target {target} already exists; refusing to overwrite it")
    source.rename(target)
    after = {p.name: sha256(p) for p in target.iterdir() if p.is_file()}
    if after != before:
        raise AirflowFailException(f"quarantined files of dt={day} do not match their checksums: before {before}, after {after}")
    return {"day": day.isoformat(), "from": str(source), "to": str(target), "sha256": before}
