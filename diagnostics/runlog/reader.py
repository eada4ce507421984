"""``open_run`` / ``RunReader``: load a run's tables into pandas DataFrames and tail new rows by
id; ``list_runs`` finds runs below a folder and ``summarize_runs`` tabulates them.

A reader may open a run that is still being written. A run written by a newer schema
version, a corrupt file, or a SQLite file that is not a run raise :class:`RunLogError` with a
message that says which and what to do. Imports no torch: the dashboard reads runs
through it.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnostics import schema
from diagnostics._version import __version__
from diagnostics.runlog.errors import STALE_AFTER_SECONDS, RunLogError

__all__ = ["RunReader", "open_run", "list_runs", "summarize_runs"]


def _connect_ro(path: Path) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        # a WAL-mode file on read-only media: open it as immutable
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?immutable=1", uri=True, check_same_thread=False
        )
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn


def _check_is_run(path: Path) -> None:
    """Raise RunLogError unless ``path`` is a readable run database of a known version."""
    try:
        conn = _connect_ro(path)
    except sqlite3.DatabaseError as exc:
        raise RunLogError(f"{path} is not an infoscope run: {exc} (is it a SQLite file?)") from None
    try:
        _read_header(conn, path)
    finally:
        conn.close()


def _read_header(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise RunLogError(
            f"{path} is not an infoscope run: {exc} (corrupt or not a SQLite file)"
        ) from None
    if "meta" not in tables:
        raise RunLogError(
            f"{path} is a SQLite database but not an infoscope run (it has no 'meta' table; "
            f"tables: {', '.join(sorted(tables)) or 'none'})"
        )
    try:
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
        raise RunLogError(f"{path}: the run's metadata is unreadable ({exc})") from None
    version = meta.get("schema_version")
    if not isinstance(version, int):
        raise RunLogError(f"{path} is not an infoscope run (no schema_version in its metadata)")
    if version > schema.SCHEMA_VERSION:
        raise RunLogError(
            f"{path} was written by run-log schema version {version}, newer than this "
            f"infoscope ({__version__}) reads (up to {schema.SCHEMA_VERSION}). Upgrade infoscope."
        )
    missing = set(schema.TABLES) - tables
    if missing:
        raise RunLogError(
            f"{path} is an incomplete infoscope run (missing tables: {', '.join(sorted(missing))})"
        )
    return meta


def _resolve_run_path(run: str | os.PathLike) -> Path:
    p = Path(run)
    if p.is_dir():
        p = p / schema.DB_FILENAME
    if not p.exists():
        raise RunLogError(
            f"no run at {Path(run)}: expected a run directory holding {schema.DB_FILENAME}"
        )
    return p


class RunReader:
    """Read a run directory. Obtain one with :func:`open_run`.

    Every table method takes ``after_id``: only rows with a larger ``id`` are returned,
    which is how a live view tails a run that is still being written.
    """

    def __init__(self, run: str | os.PathLike) -> None:
        self.path = _resolve_run_path(run)
        self.run_dir = self.path.parent
        try:
            self._conn = _connect_ro(self.path)
        except sqlite3.DatabaseError as exc:
            raise RunLogError(
                f"{self.path} is not an infoscope run: {exc} (is it a SQLite file?)"
            ) from None
        try:
            self.meta = _read_header(self._conn, self.path)
        except RunLogError:
            self._conn.close()
            raise
        self._names: dict[int, str] = {}

    # ----------------------------------------------------------------- helpers
    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RunLogError(f"cannot read {self.path}: {exc}") from None

    def _name_map(self) -> dict[int, str]:
        rows = self._query(
            "SELECT id, name FROM names WHERE id > ?", (max(self._names, default=0),)
        )
        self._names.update(rows)
        return self._names

    def _name_ids(self, names: Iterable[str] | str | None) -> list[int] | None:
        if names is None:
            return None
        if isinstance(names, str):
            names = [names]
        lookup = {v: k for k, v in self._name_map().items()}
        return [lookup[n] for n in names if n in lookup]

    def refresh_meta(self) -> dict[str, Any]:
        self.meta = {k: json.loads(v) for k, v in self._query("SELECT key, value FROM meta")}
        return self.meta

    # ------------------------------------------------------------------ tables
    def scalars(
        self,
        *,
        metrics: Iterable[str] | str | None = None,
        layers: Iterable[str] | str | None = None,
        after_id: int = 0,
    ) -> pd.DataFrame:
        """Scalar rows as a DataFrame with columns ``id, step, wall_time, metric, layer, value``.

        ``metric`` and ``layer`` are categoricals; ``layer`` is missing (NaN) for
        whole-model metrics; ``value`` NaN where NaN was logged.
        """
        where = ["id > ?"]
        params: list[Any] = [int(after_id)]
        mids = self._name_ids(metrics)
        if mids is not None:
            if not mids:
                return _empty_scalars()
            where.append(f"metric_id IN ({','.join('?' * len(mids))})")
            params += mids
        if layers is not None:
            lids = self._name_ids(layers)
            if not lids:
                return _empty_scalars()
            where.append(f"layer_id IN ({','.join('?' * len(lids))})")
            params += lids
        sql = (
            "SELECT id, step, wall_time, metric_id, COALESCE(layer_id, 0), IFNULL(value, 'nan') "
            "FROM scalars WHERE " + " AND ".join(where) + " ORDER BY id"
        )
        try:
            # stream values straight into one array (no list of row tuples); NaN is
            # stored as NULL and comes back as the text 'nan', which numpy parses
            flat = np.fromiter(
                itertools.chain.from_iterable(self._conn.execute(sql, tuple(params))),
                dtype=np.float64,
            )
        except sqlite3.DatabaseError as exc:
            raise RunLogError(f"cannot read {self.path}: {exc}") from None
        if flat.size == 0:
            return _empty_scalars()
        table = flat.reshape(-1, 6)
        return _scalar_frame(table, self._name_map())

    def tail(self, after_id: int) -> pd.DataFrame:
        """Scalar rows newer than ``after_id`` (for live views)."""
        return self.scalars(after_id=after_id)

    def last_id(self) -> int:
        """The largest scalar row id so far (0 for an empty run)."""
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM scalars")[0][0])

    def distributions(
        self, *, metrics: Iterable[str] | str | None = None, after_id: int = 0
    ) -> pd.DataFrame:
        """Distribution rows: ``id, step, wall_time, metric, layer, kind, data`` (data parsed)."""
        names = self._name_map()
        sql = "SELECT id, step, wall_time, metric_id, layer_id, kind, data FROM distributions WHERE id > ?"
        params: list[Any] = [int(after_id)]
        mids = self._name_ids(metrics)
        if mids is not None:
            if not mids:
                mids = [-1]
            sql += f" AND metric_id IN ({','.join('?' * len(mids))})"
            params += mids
        rows = self._query(sql + " ORDER BY id", tuple(params))
        return pd.DataFrame(
            [
                (
                    i,
                    s,
                    w,
                    names.get(m),
                    names.get(lay) if lay is not None else None,
                    k,
                    json.loads(d),
                )
                for i, s, w, m, lay, k, d in rows
            ],
            columns=["id", "step", "wall_time", "metric", "layer", "kind", "data"],
        )

    def alerts(self, *, after_id: int = 0) -> pd.DataFrame:
        """Alert rows: ``id, step, wall_time, indicator, severity, layer, message, evidence``.

        Severities are ``info``, ``warning``, ``critical``; runs written before 0.2 named the
        top level ``collapsed``, read here as ``critical``."""
        rows = self._query(
            "SELECT id, step, wall_time, indicator, severity, layer, message, evidence FROM alerts WHERE id > ? ORDER BY id",
            (int(after_id),),
        )
        return pd.DataFrame(
            [
                (*r[:4], schema.LEGACY_SEVERITIES.get(r[4], r[4]), *r[5:7], json.loads(r[7]))
                for r in rows
            ],
            columns=[
                "id",
                "step",
                "wall_time",
                "indicator",
                "severity",
                "layer",
                "message",
                "evidence",
            ],
        )

    def events(self, *, after_id: int = 0) -> pd.DataFrame:
        """Event rows: ``id, step, wall_time, kind, source, message, detail``."""
        rows = self._query(
            "SELECT id, step, wall_time, kind, source, message, detail FROM events WHERE id > ? ORDER BY id",
            (int(after_id),),
        )
        return pd.DataFrame(
            [(*r[:6], json.loads(r[6])) for r in rows],
            columns=["id", "step", "wall_time", "kind", "source", "message", "detail"],
        )

    # ----------------------------------------------------------------- summary
    def metrics(self) -> list[str]:
        """Names of the scalar metrics present in the run."""
        names = self._name_map()
        return sorted(names[i] for (i,) in self._query("SELECT DISTINCT metric_id FROM scalars"))

    def layers(self, metric: str | None = None) -> list[str]:
        """Layers with scalar rows (for ``metric`` if given), in first-logged order."""
        names = self._name_map()
        if metric is None:
            rows = self._query(
                "SELECT layer_id FROM scalars WHERE layer_id IS NOT NULL GROUP BY layer_id ORDER BY MIN(id)"
            )
        else:
            mids = self._name_ids(metric) or [-1]
            rows = self._query(
                "SELECT layer_id FROM scalars WHERE layer_id IS NOT NULL AND metric_id = ? "
                "GROUP BY layer_id ORDER BY MIN(id)",
                (mids[0],),
            )
        return [names[i] for (i,) in rows]

    def step_range(self) -> tuple[int, int] | None:
        lo, hi = self._query("SELECT MIN(step), MAX(step) FROM scalars")[0]
        return None if lo is None else (int(lo), int(hi))

    @property
    def status(self) -> str:
        """``finished``, ``failed``, ``running`` (recent commits) or ``stale`` (writer gone)."""
        meta = self.refresh_meta()
        status = meta.get("status", "unknown")
        if status == "running":
            updated = meta.get("updated") or 0
            if time.time() - float(updated) > STALE_AFTER_SECONDS:
                return "stale"
        return status

    def summary(self) -> dict[str, Any]:
        """One row of :func:`summarize_runs` for this run."""
        steps = self.step_range()
        counts: dict[str, int] = {}
        for severity, n in self._query("SELECT severity, COUNT(*) FROM alerts GROUP BY severity"):
            severity = schema.LEGACY_SEVERITIES.get(severity, severity)
            counts[severity] = counts.get(severity, 0) + int(n)
        return {
            "run": str(self.run_dir),
            "name": self.meta.get("name", self.run_dir.name),
            "created": self.meta.get("created"),
            "status": self.status,
            "first_step": None if steps is None else steps[0],
            "last_step": None if steps is None else steps[1],
            "rows": int(self._query("SELECT COUNT(*) FROM scalars")[0][0]),
            "metrics": len(self.metrics()),
            "alerts": int(sum(counts.values())),
            "warnings": int(counts.get("warning", 0)),
            "critical": int(counts.get("critical", 0)),
            "failures": int(
                self._query("SELECT COUNT(*) FROM events WHERE kind LIKE '%failure%'")[0][0]
            ),
            "error": None,
        }

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunReader({str(self.run_dir)!r})"


def _empty_scalars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(dtype="int64"),
            "step": pd.Series(dtype="int64"),
            "wall_time": pd.Series(dtype="float64"),
            "metric": pd.Series(dtype="object"),
            "layer": pd.Series(dtype="object"),
            "value": pd.Series(dtype="float64"),
        }
    )


def _scalar_frame(table: np.ndarray, names: dict[int, str]) -> pd.DataFrame:
    """Build the scalars DataFrame from an (n, 6) float array of
    ``id, step, wall_time, metric_id, layer_id (0 = NULL), value``."""

    def categorical(ids: np.ndarray) -> pd.Categorical:
        used = np.flatnonzero(np.bincount(ids))
        used = used[used != 0]  # id 0 stands for NULL (whole-model rows): missing
        remap = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return pd.Categorical.from_codes(remap[ids], categories=[names[int(i)] for i in used])

    return pd.DataFrame(
        {
            "id": table[:, 0].astype(np.int64),
            "step": table[:, 1].astype(np.int64),
            "wall_time": table[:, 2],
            "metric": categorical(table[:, 3].astype(np.int64)),
            "layer": categorical(table[:, 4].astype(np.int64)),
            "value": table[:, 5],
        }
    )


def open_run(run: str | os.PathLike) -> RunReader:
    """Open a run directory (or its ``run.sqlite``) for reading.

    Raises :class:`RunLogError` if there is no run, the file is corrupt or not a run,
    or it was written by a newer schema version.
    """
    return RunReader(run)


def list_runs(root: str | os.PathLike) -> list[Path]:
    """Run directories (folders holding ``run.sqlite``) below ``root``, sorted by path.

    Hidden folders are skipped. A ``root`` that is itself a run is returned alone.
    """
    root = Path(root)
    if not root.exists():
        raise RunLogError(f"no folder at {root}")
    if (root / schema.DB_FILENAME).is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d != schema.SNAPSHOTS_DIR
        )
        if schema.DB_FILENAME in filenames:
            found.append(Path(dirpath))
    return sorted(found)


def summarize_runs(root: str | os.PathLike) -> pd.DataFrame:
    """One row per run below ``root``: name, status, step range, metric and alert counts.

    A run that cannot be read still gets a row, with the reason in ``error``.
    """
    rows = []
    for run_dir in list_runs(root):
        try:
            with open_run(run_dir) as reader:
                rows.append(reader.summary())
        except RunLogError as exc:
            rows.append(
                {
                    "run": str(run_dir),
                    "name": run_dir.name,
                    "status": "unreadable",
                    "error": str(exc),
                }
            )
    columns = [
        "run", "name", "created", "status", "first_step", "last_step", "rows", "metrics",
        "alerts", "warnings", "critical", "failures", "error",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
