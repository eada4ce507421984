"""What the dashboard's pages share: the runs root, run selection, data loading with
caching and live tailing, view-state widgets bound to the URL, empty states.

Reads run logs only, through :mod:`diagnostics.runlog` (which imports no torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from pandas.api.types import union_categoricals

from diagnostics import figures as F
from diagnostics.runlog import RunLogError, list_runs, open_run, summarize_runs

#: Query-parameter binding and session persistence for every view-state widget, so a
#: URL reproduces the view and a value survives a page switch.
URL = {"bind": "query-params", "persist_state": "session"}

ENV_ROOT = "INFOSCOPE_ROOT"
#: (run, metrics) frames kept per browser session for live tailing
MAX_CACHED_FRAMES = 24


# ---------------------------------------------------------------------------- root
def root() -> Path:
    """The runs folder: ``--root DIR`` after ``--`` on the ``streamlit run`` command line,
    else ``$INFOSCOPE_ROOT``, else ``sample_runs/`` (as ``infoscope dashboard`` picks it)."""
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


def _probe(base: Path, rel: str) -> Run:
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
    """The runs picked in the sidebar (see ``app.py``), probed (status, last row id)."""
    base = root()
    return [_probe(base, rel) for rel in st.session_state.get("run", []) or []]


def default_runs(base: Path, rels: list[str]) -> list[str]:
    for rel in rels:
        run = _probe(base, rel)
        if run.ok:
            return [rel]
    return rels[:1]


def show_errors(runs: list[Run]) -> list[Run]:
    """Print one clear message per unreadable run; return the readable ones."""
    for r in runs:
        if not r.ok:
            st.error(f"**{r.rel}** cannot be shown: {r.error}", icon=":material/error:")
    return [r for r in runs if r.ok]


def require_runs() -> list[Run]:
    """The readable selected runs, or stop the page with an empty state."""
    base = root()
    if not base.is_dir():
        st.error(
            f"The runs folder **{base}** does not exist. Start the dashboard on a folder "
            "of runs: `infoscope dashboard PATH` (or `streamlit run app.py -- --root PATH`)."
        )
        st.stop()
    if not run_list(str(base)):
        no_runs_message(base)
        st.stop()
    runs = selected_runs()
    if not runs:
        st.info("Pick one or more runs in the sidebar.", icon=":material/arrow_back:")
        st.stop()
    good = show_errors(runs)
    if not good:
        st.stop()
    return good


def no_runs_message(base: Path) -> None:
    st.info(
        f"No runs below **{base}** yet. A run is a folder holding `run.sqlite`; write one "
        "from your training loop with\n\n"
        "```python\nfrom diagnostics import RunWriter\n"
        f"with RunWriter('{base}/my_run') as w:\n    w.log(step, {{'train/loss': loss}})\n```\n"
        "or attach the infoscope probes to your model. Runs appear here within seconds.",
        icon=":material/folder_open:",
    )


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


# ------------------------------------------------------------------- view controls
def settings() -> dict:
    """The sidebar's shared display settings (see ``app.py``)."""
    s = st.session_state
    return {
        "unit": s.get("unit") or "bits",
        "smoothing": float(s.get("smooth", 0.0) or 0.0),
        "log_x": bool(s.get("logx", False)),
        "log_y": bool(s.get("logy", False)),
        "max_points": int(s.get("pts", 1000) or 1000),
    }


def run_every(runs: list[Run]) -> float | None:
    """Refresh period for fragments: only when live refresh is on and a run is running."""
    if not st.session_state.get("live", True):
        return None
    if any(r.live for r in runs):
        return float(st.session_state.get("every", 2) or 2)
    return None


def _select_runs(rels: list[str]) -> None:
    st.session_state["run"] = rels


def suggest_runs(has: Callable[[list[str]], bool], what: str, *, limit: int = 4) -> None:
    """In an empty state: offer a button that picks the runs below the root whose metrics
    satisfy ``has`` (e.g. the runs that logged an information plane)."""
    base = root()
    picked = set(st.session_state.get("run") or [])
    found = []
    for rel in run_list(str(base)):
        if rel in picked:
            continue
        run = _probe(base, rel)
        if run.ok and has(metric_names(run)):
            found.append(rel)
        if len(found) == limit:
            break
    if found:
        st.button(
            f"Show the runs with {what}: {', '.join(found)}",
            on_click=_select_runs,
            args=(found,),
            key=f"suggest_{what}",
            icon=":material/arrow_forward:",
        )


def stop_until_new_rows(runs: list[Run]) -> None:
    """``st.stop()`` for an empty state; if a selected run is live, first start a small
    fragment that reruns the whole page as soon as that run has new rows (so a run that
    has not logged the page's metrics yet fills in by itself)."""
    every = run_every(runs)
    if every:
        seen = {r.rel: r.last_id for r in runs if r.live}

        @st.fragment(run_every=every)
        def watch() -> None:
            for r in runs:
                if r.rel not in seen:
                    continue
                try:
                    with open_run(r.path) as reader:
                        grew = reader.last_id() != seen[r.rel]
                except RunLogError:
                    continue
                if grew:
                    st.rerun()

        watch()
    st.stop()


def evenly_spaced(items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))
    return [items[i] for i in idx]


def chart(fig, data: pd.DataFrame | None, *, key: str, file_name: str) -> None:
    """Draw ``fig`` and offer ``data`` (what it shows) as a CSV download."""
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
    if data is not None and not data.empty:
        frame = data.copy()
        st.download_button(
            "Download CSV",
            data=lambda: F.to_csv(frame),
            file_name=file_name,
            mime="text/csv",
            key=f"{key}_csv",
            on_click="ignore",
            icon=":material/download:",
            type="tertiary",
        )


def live_caption(runs: list[Run]) -> None:
    live = [r.rel for r in runs if r.live]
    if live and run_every(runs):
        st.caption(
            f":green[●] live: {', '.join(live)} — refreshing every "
            f"{st.session_state.get('every', 2)} s (reads only new rows)"
        )


def short_json(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
