"""What the dashboard opens on: the runs each page shows while the URL names none (the
runs that make the page's point), and the one line the Runs page says about each run.

A run can say both itself in its metadata: ``story`` (one line: what the run shows) and
``showcase`` (the pages it should open, by URL path: ``runs``, ``information-plane``,
``representations``, ``language-model``, ``collapse``, ``compare``); the sample runs do
(:mod:`dashboard.samples`). For runs without them, the choice follows what they logged:
the information plane opens on the runs whose trajectories move the most, the language
model page on the RL runs, the collapse page on the run with the most severe alerts.
Reads run logs only, like the rest of the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data as D
from diagnostics.runlog import RunLogError, open_run

#: session keys: whether the reader picked runs (or the URL named some), and the page
#: whose default selection is showing
CHOSEN = "_run_chosen"
DEFAULT_FOR = "_run_default_for"
#: runs looked at (in listing order) when choosing a page's default selection, and how
#: many of them with an information plane have their trajectories read to compare them
MAX_SCAN = 50
MAX_PLANES = 10


# ---------------------------------------------------------------- default selection
def mark_chosen() -> None:
    """The reader picked runs: keep them on every page from now on."""
    st.session_state[CHOSEN] = True


def select_defaults(base: Path, rels: list[str], page: str) -> None:
    """Before the sidebar's run picker is drawn: unless the reader picked runs (or
    arrived on a URL naming other runs than ``page``'s default), put ``page``'s default
    runs in it. (A page's default selection shows in the URL too; reloading it still
    counts as no pick.)"""
    state = st.session_state
    if CHOSEN not in state:  # the session's first run: did the URL name runs?
        named = [r for r in dict.fromkeys(st.query_params.get_all("run")) if r in rels]
        state[CHOSEN] = bool(named) and named != default_runs(base, rels, page)
        if named:
            state["run"] = named
        if named and not state[CHOSEN]:
            state[DEFAULT_FOR] = page  # the URL holds this page's default already
    if state[CHOSEN] or state.get(DEFAULT_FOR) == page:
        return
    state["run"] = default_runs(base, rels, page)
    state[DEFAULT_FOR] = page


def default_runs(base: Path, rels: list[str], page: str) -> list[str]:
    """The runs ``page`` opens on: those whose meta ``showcase`` names it, else the
    page's pick among the first :data:`MAX_SCAN` readable runs (see the module
    docstring), else the first readable run. Listing order is kept."""
    runs = []
    for rel in rels:
        run = D.probe_run(base, rel)
        if run.ok:
            runs.append(run)
        if len(runs) == MAX_SCAN:
            break
    if not runs:
        return rels[:1]
    shown = [r for r in runs if page in _showcase(r.meta)]
    if not shown:
        pick = PICKS.get(page)
        shown = pick(base, runs) if pick else []
    if not shown:
        shown = runs[:1]
    keep = {r.rel for r in shown[:4]}
    return [r.rel for r in runs if r.rel in keep]


def _showcase(meta: dict | None) -> list[str]:
    value = (meta or {}).get("showcase")
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _with(runs: list[D.Run], has: Callable[[set[str]], bool], k: int = 2) -> list[D.Run]:
    return [r for r in runs if has(set(D.metric_names(r)))][:k]


def _info_plane(base: Path, runs: list[D.Run]) -> list[D.Run]:
    """The two runs whose information-plane trajectories visit the most distinct
    positions (a run whose layers sit still makes no point), among the first
    :data:`MAX_PLANES` runs with one. With two such runs or fewer there is nothing to
    compare: they are the pick, without reading their trajectories."""
    planes = []
    for r in runs:
        if len(planes) == MAX_PLANES:
            break
        names = set(D.metric_names(r))
        ests = [m.split("/")[1] for m in names if m.startswith("info_plane/") and "/I_XT" in m]
        ests = sorted(e for e in ests if f"info_plane/{e}/I_TY" in names)
        if ests:
            planes.append((r, ests[0]))
    if len(planes) <= 2:
        return [r for r, _ in planes]
    scored = [(_positions(r, est), r) for r, est in planes]
    scored.sort(key=lambda t: -t[0])  # stable: ties keep listing order
    return [r for _, r in scored[:2]]


#: (run ident, last row id, estimator) -> distinct positions; shared by every session
_POSITIONS: dict[tuple, int] = {}


def _positions(run: D.Run, est: str) -> int:
    """Distinct positions (rounded to 0.01) the layers of ``run`` visit in its ``est``
    information plane; kept per run, row count and estimator (a run that grows is read
    again)."""
    key = (D.ident(run), run.last_id, est)
    if key not in _POSITIONS:
        df = D.scalars(run, [f"info_plane/{est}/I_XT", f"info_plane/{est}/I_TY"])
        wide = df.pivot_table(
            index=["layer", "step"], columns="metric", values="value", observed=True
        ).dropna()
        if len(_POSITIONS) >= 8 * MAX_PLANES:
            _POSITIONS.clear()
        _POSITIONS[key] = len(np.unique(np.round(wide.to_numpy(), 2), axis=0))
    return _POSITIONS[key]


def _language_model(base: Path, runs: list[D.Run]) -> list[D.Run]:
    return _with(runs, lambda n: any(m.startswith("rl/") for m in n)) or _with(
        runs, lambda n: any(m.startswith(("lm/", "attn/entropy")) for m in n)
    )


def _representations(base: Path, runs: list[D.Run]) -> list[D.Run]:
    return _with(runs, lambda n: "repr/dsmi_y" in n) or _with(
        runs, lambda n: any(m.startswith("repr/") for m in n)
    )


def _collapse(base: Path, runs: list[D.Run]) -> list[D.Run]:
    """The run with the most severe alerts (critical, then warnings, then any)."""
    table = D.run_summaries(str(base))
    if table.empty:
        return []
    counts = table.set_index("run")[["critical", "warnings", "alerts"]].fillna(0)
    scored = [(tuple(counts.loc[r.rel]), r) for r in runs if r.rel in counts.index]
    scored = [(c, r) for c, r in scored if c[2] > 0]
    scored.sort(key=lambda t: tuple(-x for x in t[0]))
    return [r for _, r in scored[:1]]


#: page (URL path; "runs" for the first page) -> its pick when no run says it showcases it
PICKS: dict[str, Callable[[Path, list[D.Run]], list[D.Run]]] = {
    "runs": _info_plane,
    "information-plane": _info_plane,
    "representations": _representations,
    "language-model": _language_model,
    "collapse": _collapse,
    "compare": _representations,
}


# ------------------------------------------------------------------------- stories
FAMILIES = (  # (what a run logged, how the story calls it)
    (lambda m: m.startswith("info_plane/"), "information plane"),
    (lambda m: m.startswith("repr/"), "representations (DSE, DSMI, rank)"),
    (lambda m: m.startswith("rl/"), "RL fine-tuning (reward, entropy-advantage covariance)"),
    (lambda m: m.startswith("lm/"), "token entropy"),
    (lambda m: m.startswith("attn/entropy"), "attention entropy"),
    (lambda m: m.startswith(("train/", "val/")), "training curves"),
)


def story(meta: dict | None, metrics: Iterable[str]) -> str:
    """One line on what a run shows: its meta ``story`` (or ``description``), else what
    it logged (e.g. "information plane, training curves")."""
    for key in ("story", "description"):
        text = (meta or {}).get(key)
        if isinstance(text, str) and text.strip():
            line = " ".join(text.split())
            return line if len(line) <= 200 else line[:199] + "…"
    metrics = list(metrics)
    parts = [label for has, label in FAMILIES if any(has(m) for m in metrics)]
    if not parts:
        return f"{len(metrics)} metrics" if metrics else "no metrics logged yet"
    text = ", ".join(parts)
    return text[0].upper() + text[1:]


@st.cache_data(ttl=10, show_spinner=False)
def stories(base: str, rels: tuple[str, ...]) -> dict[str, str]:
    """:func:`story` of every readable run in ``rels`` (paths relative to ``base``)."""
    out = {}
    for rel in rels:
        path = Path(base) / rel if rel != "." else Path(base)
        try:
            with open_run(path) as reader:
                out[rel] = story(reader.meta, reader.metrics())
        except (RunLogError, Exception):  # noqa: BLE001 - a foreign file must not break the page
            continue
    return out


def story_column(base: Path, runs: pd.Series) -> list[str]:
    """The Runs page's column: a story per row of ``runs`` ("" for unreadable runs)."""
    found = stories(str(base), tuple(runs))
    return [found.get(r, "") for r in runs]
