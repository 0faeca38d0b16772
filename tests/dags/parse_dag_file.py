"""Parse one DAG file the way the dag processor does, with the network cut off.

Run as a script by test_dag_integrity.py, in a fresh interpreter per file so each parse
time and each set of imported modules is that file's alone. Prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import socket
import sys
import time

HEAVY_MODULES = ("mlflow", "sklearn", "scipy", "pandas", "numpy", "evidently", "kubernetes", "pyarrow", "skops")


def _refuse(*args, **kwargs):
    raise OSError("network access during DAG parsing is not allowed")


def main(path: str) -> None:
    for name in ("connect", "connect_ex", "sendto"):
        setattr(socket.socket, name, _refuse)
    socket.create_connection = _refuse
    socket.getaddrinfo = _refuse

    from airflow.dag_processing.dagbag import DagBag

    before = {m for m in HEAVY_MODULES if m in sys.modules}
    # What Airflow loaded before the parse stays out of the garbage collector's sight: otherwise a full
    # collection over its ~200,000 objects (about 120 ms here) falls inside the timed parse or not,
    # depending on allocation counts that any change anywhere shifts (Airflow's unit-test mode made it fall inside).
    gc.collect()
    gc.freeze()
    started, cpu_started = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=path, safe_mode=False)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,  # this process's own CPU time: what other processes do barely moves it
                "dag_ids": sorted(bag.dag_ids),
                "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
                "heavy_modules": sorted({m for m in HEAVY_MODULES if m in sys.modules} - before),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
