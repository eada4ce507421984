"""How the dashboard reads run logs: the runs root (and nothing outside it), the run list
and summaries, the selected runs, and their rows, read once per server and then tailed by
row id for every session (:mod:`dashboard.tails`).

Reads run logs only, through :mod:`diagnostics.runlog` (which imports no torch); the
widgets, empty states and charts the pages share are in :mod:`dashboard.view`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from pandas.api.types import union_categoricals

from dashboard.tails import TailCache
from diagnostics.runlog import RunLogError, list_runs, open_run

ENV_ROOT = "INFOSCOPE_ROOT"
#: the runs table's columns (those of :func:`diagnostics.runlog.summarize_runs`)
SUMMARY_COLUMNS = [
    "run", "name", "created", "status", "first_step", "last_step", "rows", "metrics",
    "alerts", "warnings", "critical", "failures", "error",
]  # fmt: skip


# ---------------------------------------------------------------------------- root
def root() -> Path:
    """The runs folder: ``--root DIR`` after ``--`` on the ``streamlit run`` command line,
    else ``$INFOSCOPE_ROOT``, else ``./runs`` or the sample runs (as ``infoscope
    dashboard`` picks it)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--root")
    args, _ = parser.parse_known_args(sys.argv[1:])
    if args.root:
        return Path(args.root).expanduser().resolve()
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).expanduser().resolve()
    from diagnostics.cli import default_root

    return default_root().resolve()


def inside_root(base: Path, rel: str) -> Path | None:
    """``base / rel`` resolved, or None if it leaves ``base`` (``..``, absolute paths,
    symbolic links pointing elsewhere): the app reads only below its root."""
    if not rel or rel.startswith(("/", "\\")) or "\x00" in rel:
        return None
    path = (base / rel).resolve()
    try:
        path.relative_to(base)
    except ValueError:
        return None
    db = path / "run.sqlite"
    if db.exists():
        try:
            db.resolve().relative_to(base)
        except ValueError:
            return None
    return path


@st.cache_data(ttl=3, show_spinner=False)
def run_list(base: str) -> list[str]:
    """Run folders below ``base``, relative to it (``.`` if ``base`` is itself a run)."""
    try:
        dirs = list_runs(base)
    except RunLogError:
        return []
    out = []
    b = Path(base)
    for d in dirs:
        rel = d.resolve().relative_to(b).as_posix() if d.resolve() != b else "."
        if inside_root(b, rel) is not None or rel == ".":
            out.append(rel)
    return out


@st.cache_data(ttl=2, show_spinner=False)
def run_summaries(base: str) -> pd.DataFrame:
    """One row per run below ``base`` (as :func:`diagnostics.runlog.summarize_runs`, with
    ``run`` relative to ``base``); a run that cannot be read gets a row with ``error``."""
    try:
        dirs = list_runs(base)
    except RunLogError:
        return pd.DataFrame()
    rows = [run_summary(d) for d in dirs]
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    table["run"] = [
        Path(r).resolve().relative_to(Path(base)).as_posix()
        if Path(r).resolve() != Path(base)
        else "."
        for r in table["run"]
    ]
    return table


# --------------------------------------------------------------------------- runs
@dataclass
class Run:
    """A selected run: its path relative to the root, and either its metadata or why it
    cannot be read."""

    rel: str
    path: Path
    error: str | None = None
    meta: dict | None = None
    status: str = "unknown"
    last_id: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        return self.rel

    @property
    def live(self) -> bool:
        return self.status == "running"


def probe_run(base: Path, rel: str) -> Run:
    """``rel`` below ``base`` opened once: its status and last row id, or why it cannot be
    read (outside the root, not a run, a foreign file)."""
    path = inside_root(base, rel) if rel != "." else base
    if path is None:
        return Run(rel, base / rel, error=f"{rel!r} is outside the runs folder {base}")
    try:
        with open_run(path) as reader:
            return Run(rel, path, meta=reader.meta, status=reader.status, last_id=reader.last_id())
    except RunLogError as exc:
        return Run(rel, path, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a foreign file must not break the page
        return Run(rel, path, error=f"{path}: cannot be read ({type(exc).__name__}: {exc})")


def selected_runs() -> list[Run]:
    """The runs picked in the sidebar (see :mod:`dashboard.app`), probed (status, last
    row id)."""
    base = root()
    return [probe_run(base, rel) for rel in st.session_state.get("run", []) or []]


# ------------------------------------------------------------------- data loading
def _concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    if a.empty:
        return b
    if b.empty:
        return a
    out = {}
    for col in a.columns:
        if isinstance(a[col].dtype, pd.CategoricalDtype) or isinstance(
            b[col].dtype, pd.CategoricalDtype
        ):
            out[col] = union_categoricals(
                [pd.Categorical(a[col]), pd.Categorical(b[col])], ignore_order=True
            )
        else:
            out[col] = np.concatenate([a[col].to_numpy(), b[col].to_numpy()])
    return pd.DataFrame(out)


#: shared caches (see :mod:`dashboard.tails`): frames per (run, metrics), metric names,
#: distributions, alerts, and the runs table's per-run counts
FRAMES = TailCache(32)
NAMES = TailCache(256)
DISTS = TailCache(16)
ALERTS = TailCache(256)
SUMMARIES = TailCache(1024)
#: above this many new rows, metric names are re-read with one query, not from the rows
_NAMES_TAIL_ROWS = 20_000


def ident(run: Run) -> tuple[str, object]:
    """What names a run in the caches: its path and creation time (a run rewritten at
    the same path is a new run)."""
    return str(run.path), (run.meta or {}).get("created")


def _last_id(df: pd.DataFrame, last: int) -> int:
    return max(last, int(df["id"].max())) if len(df) else last


def scalars(run: Run, metrics: list[str] | None) -> pd.DataFrame:
    """Scalar rows of ``metrics`` (all if None) for ``run``, read once per server and
    tailed by row id afterwards (only rows newer than the last seen id are read), shared
    by every session: treat the frame as read-only."""
    names = None if metrics is None else tuple(sorted(set(metrics)))
    with open_run(run.path) as reader:
        last = reader.last_id()

        def full():
            df = reader.scalars(metrics=names)
            return df, _last_id(df, last)

        def tail(df, seen):
            new = reader.scalars(metrics=names, after_id=seen)
            return _concat(df, new), _last_id(new, last)

        return FRAMES.get((*ident(run), names), last=last, full=full, tail=tail)


def distributions(run: Run, metric: str) -> pd.DataFrame:
    """Distribution rows of ``metric``, tailed by id like :func:`scalars` (read-only)."""
    with open_run(run.path) as reader:

        def full():
            df = reader.distributions(metrics=[metric])
            return df, _last_id(df, 0)

        def tail(df, seen):
            new = reader.distributions(metrics=[metric], after_id=seen)
            if new.empty:
                return df, seen
            return pd.concat([df, new], ignore_index=True), _last_id(new, seen)

        return DISTS.get((*ident(run), metric), last=None, full=full, tail=tail)


def alerts(run: Run) -> pd.DataFrame:
    """The run's alerts, tailed by id (read-only)."""
    with open_run(run.path) as reader:

        def full():
            df = reader.alerts()
            return df, _last_id(df, 0)

        def tail(df, seen):
            new = reader.alerts(after_id=seen)
            if new.empty:
                return df, seen
            return pd.concat([df, new], ignore_index=True), _last_id(new, seen)

        return ALERTS.get(ident(run), last=None, full=full, tail=tail)


def events(run: Run) -> pd.DataFrame:
    with open_run(run.path) as reader:
        return reader.events()


def _names_tail(reader, names: frozenset, seen: int, last: int) -> tuple[frozenset, int]:
    if last - seen > _NAMES_TAIL_ROWS:
        return frozenset(reader.metrics()), last
    new = reader.scalars(after_id=seen)
    present = new["metric"].cat.remove_unused_categories().cat.categories
    return names | frozenset(present), _last_id(new, last)


def metric_names(run: Run) -> list[str]:
    """Scalar metric names present in ``run``, sorted (read once, then from new rows)."""
    with open_run(run.path) as reader:
        last = reader.last_id()
        names = NAMES.get(
            ident(run),
            last=last,
            full=lambda: (frozenset(reader.metrics()), last),
            tail=lambda names, seen: _names_tail(reader, names, seen, last),
        )
    return sorted(names)


def _counts(reader, last: int) -> tuple[dict, int]:
    """Rows and step range of a run's scalar table as of ``last``."""
    summary = reader.summary()
    return {k: summary[k] for k in ("rows", "first_step", "last_step")}, last


def _counts_tail(reader, counts: dict, seen: int, last: int) -> tuple[dict, int]:
    if last - seen > _NAMES_TAIL_ROWS:
        return _counts(reader, last)
    new = reader.scalars(after_id=seen)
    if new.empty:
        return counts, last
    lo, hi = int(new["step"].min()), int(new["step"].max())
    return {
        "rows": counts["rows"] + len(new),
        "first_step": lo if counts["first_step"] is None else min(counts["first_step"], lo),
        "last_step": hi if counts["last_step"] is None else max(counts["last_step"], hi),
    }, _last_id(new, last)


def run_summary(path: Path) -> dict:
    """One row of :func:`run_summaries` (the columns of
    :func:`diagnostics.runlog.summarize_runs`): the scalar table's counts are read once
    and tailed by row id, the alert and event counts and the status each time."""
    try:
        with open_run(path) as reader:
            meta, status, last = reader.meta, reader.status, reader.last_id()
            counts = SUMMARIES.get(
                (str(path), meta.get("created")),
                last=last,
                full=lambda: _counts(reader, last),
                tail=lambda c, seen: _counts_tail(reader, c, seen, last),
            )
            run = Run(path.name, path, meta=meta, status=status, last_id=last)
            al = alerts(run)
            n_metrics = len(metric_names(run))
            ev = reader.events()
    except RunLogError as exc:
        return {"run": str(path), "name": path.name, "status": "unreadable", "error": str(exc)}
    severity = al["severity"].value_counts() if len(al) else pd.Series(dtype=int)
    return {
        "run": str(path),
        "name": meta.get("name", path.name),
        "created": meta.get("created"),
        "status": status,
        "first_step": counts["first_step"],
        "last_step": counts["last_step"],
        "rows": counts["rows"],
        "metrics": n_metrics,
        "alerts": len(al),
        "warnings": int(severity.get("warning", 0)),
        "critical": int(severity.get("critical", 0)),
        "failures": int(ev["kind"].astype(str).str.contains("failure").sum()) if len(ev) else 0,
        "error": None,
    }


def with_layer_order(df: pd.DataFrame) -> list[str]:
    """Layers of ``df`` in first-logged order."""
    if df.empty:
        return []
    col = df["layer"]
    present = set(col.dropna().unique())
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [c for c in col.cat.categories if c in present]
    return list(pd.unique(col.dropna()))
