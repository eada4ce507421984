"""How the dashboard reads run logs: the runs root (and nothing outside it), the run list
and summaries, the selected runs, and their rows with caching and live tailing.

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

from diagnostics.runlog import RunLogError, list_runs, open_run, summarize_runs

ENV_ROOT = "INFOSCOPE_ROOT"
#: (run, metrics) frames kept per browser session for live tailing
MAX_CACHED_FRAMES = 24


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


@st.cache_data(ttl=5, show_spinner="Reading run summaries…")
def run_summaries(base: str) -> pd.DataFrame:
    try:
        table = summarize_runs(base)
    except RunLogError:
        return pd.DataFrame()
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


@st.cache_data(max_entries=48, show_spinner=False)
def _scalars_upto(path: str, metrics: tuple[str, ...] | None, last_id: int) -> pd.DataFrame:
    """Scalar rows of ``metrics`` with ``id <= last_id`` (cached across sessions: a
    finished run's rows never change, a live run's key moves with its last id)."""
    with open_run(path) as reader:
        df = reader.scalars(metrics=list(metrics) if metrics is not None else None)
    return df[df["id"].to_numpy() <= last_id].reset_index(drop=True)


def scalars(run: Run, metrics: list[str] | None) -> pd.DataFrame:
    """Scalar rows of ``metrics`` (all if None) for ``run``.

    The first call for a (run, metrics) pair reads through the cross-session cache; later
    calls in this session read only rows newer than the last seen id (live tail), kept
    per run in ``st.session_state``.
    """
    key = (str(run.path), None if metrics is None else tuple(sorted(set(metrics))))
    cache = st.session_state.setdefault("_scalar_cache", {})
    with open_run(run.path) as reader:
        last = reader.last_id()
        hit = cache.get(key)
        if hit is None or hit[1] > last:  # first time, or the run was rewritten
            df = _scalars_upto(key[0], key[1], last)
            seen = last
        elif hit[1] < last:
            new = reader.scalars(metrics=key[1], after_id=hit[1])
            df = _concat(hit[0], new)
            seen = max(last, int(new["id"].max())) if len(new) else last
        else:
            return hit[0]
    cache.pop(key, None)
    cache[key] = (df, seen)
    while len(cache) > MAX_CACHED_FRAMES:  # least recently loaded first
        cache.pop(next(iter(cache)))
    return df


def distributions(run: Run, metric: str) -> pd.DataFrame:
    """Distribution rows of ``metric``, tailed by id like :func:`scalars`."""
    key = ("dist", str(run.path), metric)
    cache = st.session_state.setdefault("_dist_cache", {})
    hit = cache.get(key)
    after = hit[1] if hit is not None else 0
    with open_run(run.path) as reader:
        new = reader.distributions(metrics=[metric], after_id=after)
    if hit is not None and new.empty:
        return hit[0]
    df = new if hit is None else pd.concat([hit[0], new], ignore_index=True)
    cache[key] = (df, int(df["id"].max()) if len(df) else 0)
    return df


def alerts(run: Run) -> pd.DataFrame:
    with open_run(run.path) as reader:
        return reader.alerts()


def events(run: Run) -> pd.DataFrame:
    with open_run(run.path) as reader:
        return reader.events()


@st.cache_data(max_entries=64, show_spinner=False)
def _metric_names(path: str, last_id: int) -> list[str]:
    with open_run(path) as reader:
        return reader.metrics()


def metric_names(run: Run) -> list[str]:
    """Scalar metric names present in ``run`` (cached per run and last row id)."""
    return _metric_names(str(run.path), run.last_id)


def with_layer_order(df: pd.DataFrame) -> list[str]:
    """Layers of ``df`` in first-logged order."""
    if df.empty:
        return []
    col = df["layer"]
    present = set(col.dropna().unique())
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [c for c in col.cat.categories if c in present]
    return list(pd.unique(col.dropna()))
