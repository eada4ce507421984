"""The run log: a directory with ``run.sqlite`` (tables and metric names: :mod:`diagnostics.schema`).

``RunWriter`` (``writer``) appends rows in batched transactions; ``open_run`` returns a
``RunReader`` (``reader``) that loads tables into pandas DataFrames and tails new rows by id;
``list_runs`` finds runs below a folder and ``summarize_runs`` tabulates them. Nothing here
imports torch: the dashboard reads runs through this package.
"""

from __future__ import annotations

from diagnostics.runlog.errors import STALE_AFTER_SECONDS, RunLogError
from diagnostics.runlog.reader import RunReader, list_runs, open_run, summarize_runs
from diagnostics.runlog.writer import RunWriter

__all__ = [
    "STALE_AFTER_SECONDS",
    "RunLogError",
    "RunReader",
    "RunWriter",
    "list_runs",
    "open_run",
    "summarize_runs",
]
