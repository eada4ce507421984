"""``RunWriter``: append a run's rows to ``run.sqlite`` in batched transactions.

SQLite in WAL mode, so readers in other processes see consistent snapshots while it writes.
A writer killed at any point (even SIGKILL) leaves a readable run that lost at most the rows
logged since its last commit (one batch, or ``flush_seconds`` of rows). NaN is stored as SQL
NULL and read back as NaN; +/-inf round-trip. A read-only folder or a full disk raise
:class:`RunLogError`. Imports no torch.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import socket
import sqlite3
import subprocess
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics import schema
from diagnostics._version import __version__
from diagnostics.runlog.errors import RunLogError
from diagnostics.runlog.reader import _check_is_run

__all__ = ["RunWriter"]


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_default, allow_nan=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # torch tensors, without importing torch
        return obj.tolist()
    return repr(obj)


def _git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _write_error(path: Path, exc: BaseException) -> RunLogError:
    text = str(exc).lower()
    if "full" in text or getattr(exc, "errno", None) == 28:
        why = "the disk is full"
    elif "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        why = "the location is read-only"
    else:
        why = str(exc)
    return RunLogError(f"cannot write run log {path}: {why} ({type(exc).__name__}: {exc})")


_LIVE_WRITERS: weakref.WeakSet[RunWriter] = weakref.WeakSet()


@atexit.register
def _close_live_writers() -> None:
    for writer in list(_LIVE_WRITERS):
        with contextlib.suppress(Exception):
            writer.close()


class RunWriter:
    """Append metrics to a run directory.

    Parameters
    ----------
    run_dir:
        The run's folder; created if missing. An existing run is appended to.
    meta:
        Run metadata stored as JSON: known keys are ``name``, ``config`` (a dict),
        ``model_summary`` (a string); any other key is kept too.
    batch_rows:
        Rows buffered before a commit.
    flush_seconds:
        A pending batch older than this is committed at the next ``log`` call.

    Rows are committed in transactions of up to ``batch_rows`` rows; ``flush()``,
    ``close()`` and interpreter exit commit what is pending. Usable as a context manager.

    >>> import tempfile
    >>> with RunWriter(tempfile.mkdtemp(), meta={"name": "demo"}) as w:
    ...     w.log(0, {"train/loss": 2.3})
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        meta: Mapping[str, Any] | None = None,
        batch_rows: int = 5000,
        flush_seconds: float = 2.0,
    ) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows: expected an integer >= 1, got {batch_rows}")
        if not flush_seconds >= 0:
            raise ValueError(f"flush_seconds: expected a number >= 0, got {flush_seconds}")
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / schema.DB_FILENAME
        self.batch_rows = int(batch_rows)
        self.flush_seconds = float(flush_seconds)
        #: rows kept for retry after a failed commit (e.g. a full disk); older ones are
        #: dropped beyond this and counted in ``dropped_rows``
        self.max_pending_rows = 50 * self.batch_rows
        self.dropped_rows = 0
        self._lock = threading.RLock()
        self._closed = False
        self._names: dict[str, int] = {}
        self._scalars: list[tuple] = []
        self._dists: list[tuple] = []
        self._alerts: list[tuple] = []
        self._events: list[tuple] = []
        self._pending_since: float | None = None
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            if existed:
                _check_is_run(self.path)
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._conn:
                for ddl in schema.DDL:
                    self._conn.execute(ddl)
            self._names = dict(self._conn.execute("SELECT name, id FROM names").fetchall())
            self._init_meta(dict(meta or {}), existed)
        except RunLogError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _write_error(self.path, exc) from exc
        _LIVE_WRITERS.add(self)

    # ------------------------------------------------------------------ metadata
    def _init_meta(self, meta: dict[str, Any], existed: bool) -> None:
        now = time.time()
        if existed:
            version = self._read_meta_key("schema_version")
            if version is not None and int(version) > schema.SCHEMA_VERSION:
                raise RunLogError(
                    f"{self.path} was written by run-log schema version {version}; this "
                    f"infoscope ({__version__}) writes version {schema.SCHEMA_VERSION}. "
                    "Upgrade infoscope or write to a new run directory."
                )
        base: dict[str, Any] = {}
        if not existed:
            base = {
                "schema_version": schema.SCHEMA_VERSION,
                "name": self.run_dir.resolve().name,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": {},
                "model_summary": None,
                "git_commit": _git_commit(Path.cwd()),
                "infoscope_version": __version__,
            }
        base.update(meta)
        base.update({"status": "running", "updated": now, "pid": os.getpid()})
        base.setdefault("host", socket.gethostname())
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [(k, _json(v)) for k, v in base.items()],
            )

    def _read_meta_key(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, **values: Any) -> None:
        """Set or replace metadata keys (committed immediately)."""
        self._check_open()
        try:
            with self._lock, self._conn:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [(k, _json(v)) for k, v in values.items()],
                )
        except sqlite3.Error as exc:
            raise _write_error(self.path, exc) from exc

    # ------------------------------------------------------------------ logging
    def _name_id(self, name: str) -> int:
        nid = self._names.get(name)
        if nid is None:
            cur = self._conn.execute("INSERT OR IGNORE INTO names(name) VALUES (?)", (name,))
            if cur.lastrowid and cur.rowcount:
                nid = cur.lastrowid
            else:
                nid = self._conn.execute("SELECT id FROM names WHERE name = ?", (name,)).fetchone()[
                    0
                ]
            self._names[name] = nid
        return nid

    def _check_open(self) -> None:
        if self._closed:
            raise RunLogError(f"the writer for {self.path} is closed")

    def log(
        self,
        step: int,
        values: Mapping[str, float],
        *,
        layer: str | None = None,
        wall_time: float | None = None,
    ) -> None:
        """Record scalar ``values`` (metric name -> number) at ``step`` for ``layer``.

        NaN and +/-inf are recorded as such. Values may be Python numbers, numpy scalars
        or 0-d tensors (converted with ``float``, which syncs a GPU tensor).
        """
        self._check_open()
        step = _as_step(step)
        t = time.time() if wall_time is None else float(wall_time)
        if not isinstance(values, Mapping):
            raise TypeError(
                f"values: expected a dict of metric name -> number, got {type(values).__name__}"
            )
        with self._lock:
            lay = None if layer is None else str(layer)
            rows = self._scalars
            for metric, value in values.items():
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    raise TypeError(
                        f"values[{metric!r}]: expected a number, got {type(value).__name__} {value!r}"
                    ) from None
                rows.append((step, t, str(metric), lay, None if math.isnan(v) else v))
            self._after_append()

    def log_many(
        self, rows: Iterable[tuple[int, str, str | None, float]], *, wall_time: float | None = None
    ) -> None:
        """Record many ``(step, metric, layer, value)`` rows at once."""
        self._check_open()
        t = time.time() if wall_time is None else float(wall_time)
        with self._lock:
            append = self._scalars.append
            for step, metric, layer, value in rows:
                v = float(value)
                # (the usual types pass as they are: a run's probes write ~100 rows a record)
                append(
                    (
                        step if type(step) is int else _as_step(step),
                        t,
                        metric if type(metric) is str else str(metric),
                        layer if layer is None or type(layer) is str else str(layer),
                        v if v == v else None,  # NaN as NULL
                    )
                )
            self._after_append()

    def log_distribution(
        self,
        step: int,
        metric: str,
        *,
        layer: str | None = None,
        edges: Iterable[float] | None = None,
        counts: Iterable[float] | None = None,
        quantiles: Iterable[float] | None = None,
        values: Iterable[float] | None = None,
    ) -> None:
        """Record a histogram (``edges`` with ``len(counts) + 1`` entries, ``counts``) or
        quantiles (``quantiles`` in [0, 1] and their ``values``) of ``metric`` at ``step``."""
        self._check_open()
        step = _as_step(step)
        if edges is not None or counts is not None:
            if edges is None or counts is None or quantiles is not None:
                raise ValueError(
                    "log_distribution: pass either edges and counts, or quantiles and values"
                )
            e = [float(v) for v in edges]
            c = [float(v) for v in counts]
            if len(e) != len(c) + 1:
                raise ValueError(
                    f"edges: expected len(counts) + 1 = {len(c) + 1} entries, got {len(e)}"
                )
            kind, data = "histogram", {"edges": e, "counts": c}
        elif quantiles is not None and values is not None:
            q = [float(v) for v in quantiles]
            vals = [float(v) for v in values]
            if len(q) != len(vals):
                raise ValueError(
                    f"values: expected {len(q)} entries (one per quantile), got {len(vals)}"
                )
            kind, data = "quantiles", {"q": q, "values": vals}
        else:
            raise ValueError(
                "log_distribution: pass either edges and counts, or quantiles and values"
            )
        with self._lock:
            lay = None if layer is None else str(layer)
            self._dists.append((step, time.time(), str(metric), lay, kind, _json(data)))
            self._after_append()

    def alert(
        self,
        step: int,
        indicator: str,
        *,
        severity: str,
        message: str,
        layer: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an alert from a collapse indicator, with its evidence (JSON).

        ``severity`` is ``info``, ``warning`` or ``critical`` (``collapsed``, the name before
        0.2, is stored as ``critical``)."""
        self._check_open()
        severity = schema.LEGACY_SEVERITIES.get(severity, severity)
        if severity not in schema.SEVERITIES:
            raise ValueError(f"severity: expected one of {schema.SEVERITIES}, got {severity!r}")
        with self._lock:
            self._alerts.append(
                (
                    _as_step(step),
                    time.time(),
                    str(indicator),
                    severity,
                    layer,
                    str(message),
                    _json(dict(evidence or {})),
                )
            )
            self._after_append()

    def event(
        self,
        step: int | None,
        kind: str,
        message: str,
        *,
        source: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record something that happened to the run (e.g. a probe failure)."""
        self._check_open()
        with self._lock:
            self._events.append(
                (
                    None if step is None else _as_step(step),
                    time.time(),
                    str(kind),
                    source,
                    str(message),
                    _json(dict(detail or {})),
                )
            )
            self._after_append()

    def _after_append(self) -> None:
        now = time.monotonic()
        if self._pending_since is None:
            self._pending_since = now
        pending = len(self._scalars) + len(self._dists) + len(self._alerts) + len(self._events)
        if pending >= self.batch_rows or now - self._pending_since >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit every pending row in one transaction."""
        with self._lock:
            if self._closed:
                return
            nid = self._name_id
            try:
                with self._conn:
                    if self._scalars:
                        self._conn.executemany(
                            "INSERT INTO scalars(step, wall_time, metric_id, layer_id, value) VALUES (?,?,?,?,?)",
                            [
                                (s, t, nid(m), None if lay is None else nid(lay), v)
                                for s, t, m, lay, v in self._scalars
                            ],
                        )
                    if self._dists:
                        self._conn.executemany(
                            "INSERT INTO distributions(step, wall_time, metric_id, layer_id, kind, data) VALUES (?,?,?,?,?,?)",
                            [
                                (s, t, nid(m), None if lay is None else nid(lay), k, d)
                                for s, t, m, lay, k, d in self._dists
                            ],
                        )
                    if self._alerts:
                        self._conn.executemany(
                            "INSERT INTO alerts(step, wall_time, indicator, severity, layer, message, evidence) VALUES (?,?,?,?,?,?,?)",
                            self._alerts,
                        )
                    if self._events:
                        self._conn.executemany(
                            "INSERT INTO events(step, wall_time, kind, source, message, detail) VALUES (?,?,?,?,?,?)",
                            self._events,
                        )
                    self._conn.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('updated', ?)",
                        (_json(time.time()),),
                    )
            except sqlite3.Error as exc:
                # names interned inside the failed transaction were rolled back too
                with contextlib.suppress(sqlite3.Error):
                    self._names = dict(self._conn.execute("SELECT name, id FROM names").fetchall())
                # keep the rows for a later retry (space may be freed), but bounded
                excess = len(self._scalars) - self.max_pending_rows
                if excess > 0:
                    del self._scalars[:excess]
                    self.dropped_rows += excess
                raise _write_error(self.path, exc) from exc
            self._scalars.clear()
            self._dists.clear()
            self._alerts.clear()
            self._events.clear()
            self._pending_since = None

    def close(self, *, status: str = "finished") -> None:
        """Commit pending rows, mark the run ``status`` and close the file."""
        with self._lock:
            if self._closed:
                return
            try:
                self.flush()
                self.set_meta(status=status, updated=time.time())
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    # a finished run becomes one plain file (no -wal/-shm beside it), which
                    # also reads from read-only media; skipped while a reader holds it open
                    self._conn.execute("PRAGMA journal_mode=DELETE")
            finally:
                self._closed = True
                self._conn.close()
                _LIVE_WRITERS.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(status="failed" if exc_type is not None else "finished")


def _as_step(step: Any) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        try:
            f = float(step)
        except (TypeError, ValueError):
            raise TypeError(
                f"step: expected an integer, got {type(step).__name__} {step!r}"
            ) from None
        if not f.is_integer():
            raise TypeError(f"step: expected an integer, got {step!r}")
        return int(f)
    return int(step.__index__())
