"""The dashboard's data layer without a browser: the caches shared by every session (read
once, then only rows newer than the last seen id), the runs table they feed, and the
figure-side reductions (downsampling that keeps extremes, grids built without pandas
pivots) checked against plain references."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pandas as pd
import pytest

from dashboard import data as D
from dashboard import figures as F
from dashboard.figures.heatmaps import MAX_HEIGHT, _grid
from dashboard.figures.info_plane import MAX_MARKERS, trajectory_indices
from dashboard.tails import TailCache
from diagnostics.runlog import RunReader, RunWriter, summarize_runs


# ------------------------------------------------------------------------ TailCache
def test_tail_cache_hit_tail_rewrite_and_eviction():
    calls = []

    def full(v, seen):
        return lambda: (calls.append("full") or v, seen)

    def tail(value, seen):
        calls.append(("tail", seen))
        return value + ["new"], seen + 1

    cache = TailCache(2)
    assert cache.get("a", last=3, full=full(["x"], 3), tail=tail) == ["x"]
    assert cache.get("a", last=3, full=full([], 0), tail=tail) == ["x"]  # hit: no read
    assert cache.get("a", last=4, full=full([], 0), tail=tail) == ["x", "new"]
    assert calls == ["full", ("tail", 3)]
    # the cached value has seen more rows than the run holds: it was rewritten
    assert cache.get("a", last=1, full=full(["y"], 1), tail=tail) == ["y"]
    # last unknown (None): always tail
    assert cache.get("a", last=None, full=full([], 0), tail=tail) == ["y", "new"]
    cache.get("b", last=0, full=full([], 0))
    cache.get("c", last=0, full=full([], 0))
    assert len(cache) == 2  # "a" was the least recently used
    calls.clear()
    cache.get("a", last=1, full=full(["z"], 1), tail=tail)
    assert calls == ["full"]
    with pytest.raises(ValueError, match="max_entries: expected an integer >= 1, got 0"):
        TailCache(0)


def test_tail_cache_reads_once_under_concurrent_sessions():
    reads = []

    def full():
        reads.append(1)
        time.sleep(0.05)
        return "value", 7

    cache = TailCache(4)
    out = []
    threads = [
        threading.Thread(target=lambda: out.append(cache.get("k", last=7, full=full)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["value"] * 4 and len(reads) == 1


# --------------------------------------------------------------- shared run caches
@pytest.fixture()
def spy(monkeypatch):
    """Every ``RunReader.scalars`` call's ``after_id``."""
    calls = []
    original = RunReader.scalars

    def scalars(self, **kw):
        calls.append(kw.get("after_id", 0))
        return original(self, **kw)

    monkeypatch.setattr(RunReader, "scalars", scalars)
    return calls


def live_run(path):
    w = RunWriter(path, flush_seconds=0)
    for s in range(50):
        w.log(s, {"train/loss": 1.0 / (s + 1)})
        w.log(s, {"repr/dse": 0.1 * s}, layer="l0")
    w.flush()
    return w


def test_scalars_are_read_once_then_tailed_for_every_session(tmp_path, spy):
    w = live_run(tmp_path / "run")
    try:
        run = D.probe_run(tmp_path, "run")
        first = D.scalars(run, ["train/loss"])
        assert spy == [0] and len(first) == 50
        assert D.metric_names(run) == ["repr/dse", "train/loss"]  # one query, no rows
        again = D.scalars(D.probe_run(tmp_path, "run"), ["train/loss"])  # another session
        assert again is first and spy == [0]  # shared, nothing read
        seen = int(first["id"].max())
        for s in range(50, 60):
            w.log(s, {"train/loss": 1.0 / (s + 1), "new/metric": 1.0})
        w.flush()
        grown = D.scalars(run, ["train/loss"])
        assert "new/metric" in D.metric_names(D.probe_run(tmp_path, "run"))
        assert len(spy) == 3 and min(spy[1:]) >= seen  # only rows after the last seen id
        with RunReader(tmp_path / "run") as r:
            pd.testing.assert_frame_equal(
                grown.reset_index(drop=True).astype({"metric": object, "layer": object}),
                r.scalars(metrics=["train/loss"]).astype({"metric": object, "layer": object}),
            )
    finally:
        w.close()


def test_a_run_rewritten_at_the_same_path_is_read_afresh(tmp_path):
    with RunWriter(tmp_path / "run", meta={"created": "first"}) as w:
        w.log(0, {"a": 1.0})
        w.log(1, {"a": 2.0})
    assert D.scalars(D.probe_run(tmp_path, "run"), ["a"])["value"].tolist() == [1.0, 2.0]
    (tmp_path / "run" / "run.sqlite").unlink()
    for extra in ("-wal", "-shm"):
        (tmp_path / "run" / f"run.sqlite{extra}").unlink(missing_ok=True)
    with RunWriter(tmp_path / "run", meta={"created": "second"}) as w:
        w.log(0, {"a": 5.0})
        w.log(1, {"a": 6.0})
    assert D.scalars(D.probe_run(tmp_path, "run"), ["a"])["value"].tolist() == [5.0, 6.0]


def test_alerts_are_tailed(tmp_path):
    w = live_run(tmp_path / "run")
    try:
        w.alert(3, "saturation", severity="warning", message="one")
        w.flush()
        run = D.probe_run(tmp_path, "run")
        assert D.alerts(run)["message"].tolist() == ["one"]
        w.alert(9, "rank_collapse", severity="critical", message="two")
        w.flush()
        assert D.alerts(run)["message"].tolist() == ["one", "two"]
    finally:
        w.close()


def test_runs_table_matches_the_run_log_summaries(runs_root, tmp_path):
    ours = D.run_summary
    for run_dir in sorted(p.parent for p in runs_root.rglob("run.sqlite")):
        expected = summarize_runs(run_dir).iloc[0].to_dict()
        got = ours(run_dir)
        for col in ("status", "error") if expected["error"] else D.SUMMARY_COLUMNS[1:]:
            assert got[col] == expected[col] or (pd.isna(got[col]) and pd.isna(expected[col])), (
                run_dir,
                col,
            )
    # a live run: the counts follow the new rows
    w = live_run(tmp_path / "live")
    try:
        assert ours(tmp_path / "live")["rows"] == 100
        for s in range(50, 70):
            w.log(s, {"train/loss": 0.1, "val/loss": 0.2})
        w.alert(60, "saturation", severity="warning", message="m")
        w.flush()
        got, expected = ours(tmp_path / "live"), summarize_runs(tmp_path / "live").iloc[0]
        for col in ("rows", "first_step", "last_step", "metrics", "alerts", "warnings"):
            assert got[col] == expected[col], col
    finally:
        w.close()


# ------------------------------------------------------- downsampling and grids
@pytest.mark.parametrize("seed", range(5))
def test_path_downsampling_keeps_every_column_extreme_per_bucket(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(500, 5000))
    x, y = rng.standard_normal(n).cumsum(), rng.standard_normal(n)
    x[rng.integers(n)] = np.nan
    idx = F.path_extremes_indices([x, y], 120)
    assert len(idx) <= 120 and idx[0] == 0 and idx[-1] == n - 1
    assert np.all(np.diff(idx) > 0)
    for col in (x, y):
        assert np.nanargmax(col) in idx and np.nanargmin(col) in idx
    # the trajectory sampler keeps them too, within the same budget
    idx = trajectory_indices(x, y, 60)
    assert len(idx) <= 60 and np.nanargmax(x) in idx and np.nanargmin(y) in idx
    with pytest.raises(ValueError, match="max_points: expected an integer >= 6"):
        F.path_extremes_indices([x, y][:1] * 2, 5)


def test_info_plane_figure_draws_each_trajectorys_peak():
    steps = np.arange(5000)
    xt = np.where(steps < 3333, steps / 3333, 1 - (steps - 3333) / 5000) * 4.0
    xt[1234] = 9.0  # a spike
    frame = pd.DataFrame({"layer": "a", "step": steps, "I_XT": xt, "I_TY": steps / 5000})
    frame["layer"] = pd.Categorical(frame["layer"])
    fig = F.info_plane_figure({"run": frame}, max_points=60)
    (trace,) = fig.data
    assert len(trace.x) <= 60
    assert 9.0 in trace.x and 1234 in trace.customdata
    assert 3333 in trace.customdata  # the turn from fitting to compression
    assert trace.customdata[0] == 0 and trace.customdata[-1] == 4999
    assert trace.marker.maxdisplayed == MAX_MARKERS < len(trace.x)  # markers thinned, not points


def test_heatmap_grid_and_buckets_match_pandas():
    rng = np.random.default_rng(0)
    rows = [(f"l{i}", s, rng.random()) for s in range(0, 900, 1) for i in range(6)]
    rows += [("l2", 5, 42.0)]  # logged twice: the last row wins
    frame = pd.DataFrame(rows, columns=["layer", "step", "value"])
    frame.loc[rng.integers(len(frame), size=50), "value"] = np.nan
    layers = [f"l{i}" for i in range(6)]
    xs, grid = _grid(frame, layers, "step", "layer", "value")
    ref = frame.pivot_table(
        index="layer", columns="step", values="value", aggfunc="last", dropna=False
    ).reindex(index=layers)
    np.testing.assert_array_equal(xs, ref.columns.to_numpy())
    assert grid[2, 5] == 42.0
    # pandas' "last" skips NaN; the grid keeps the last row as logged
    last_rows = frame.groupby(["layer", "step"]).tail(1).set_index(["layer", "step"])["value"]
    expected = last_rows.unstack().reindex(index=layers).to_numpy()
    np.testing.assert_array_equal(grid, expected)
    fig = F.heatmap_figure(frame, max_columns=100)
    z = np.asarray(fig.data[0].z, dtype=np.float64)
    edges = np.linspace(0, 900, 101).round().astype(int)
    with np.errstate(invalid="ignore"):
        want = np.stack([np.nanmean(expected[:, a:b], axis=1) for a, b in zip(edges, edges[1:])], 1)
    np.testing.assert_allclose(z, want, rtol=1e-6)


def test_attention_cube_matches_a_pivot():
    rng = np.random.default_rng(1)
    rows = [
        (s, f"attn/entropy/h{h}", f"b{li}", rng.random())
        for s in range(0, 300, 3)
        for li in range(5)
        for h in range(4)
    ]
    rows += [(3, "attn/entropy/h1", "b2", 9.0), (6, "attn/entropy", "b0", 1.0)]
    df = pd.DataFrame(rows, columns=["step", "metric", "layer", "value"])
    df["metric"] = df["metric"].astype("category")
    heads = F.attention_frame(df)
    assert len(heads) == len(rows) - 1 and set(heads["head"]) == {0, 1, 2, 3}
    fig = F.attention_heatmap_figure(heads, max_frames=200)
    frames = {int(f.name): np.asarray(f.data[0].z) for f in fig.frames}
    cube = heads.groupby(["step", "layer", "head"]).tail(1).set_index(["step", "layer", "head"])
    cube = cube.sort_index()
    for s in (0, 3, 297):
        want = cube.loc[s, "value"].unstack().reindex(index=[f"b{i}" for i in range(5)])
        np.testing.assert_array_equal(frames[s], want.to_numpy())
    assert frames[3][2, 1] == 9.0  # logged twice: the last row
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), frames[297])  # opens on the last


def test_distribution_heatmap_sends_shares_once():
    steps = np.arange(10)
    edges = np.linspace(0, 1, 5)
    frac = np.full((4, 10), 0.25)
    fig = F.distribution_heatmap_figure(steps, edges, frac)
    assert fig.data[0].customdata is None and "%{z" in fig.data[0].hovertemplate
    np.testing.assert_allclose(np.asarray(fig.data[0].z).sum(axis=0), 1.0, rtol=1e-6)
    logged = F.distribution_heatmap_figure(steps, edges, frac, log_color=True)
    np.testing.assert_allclose(np.asarray(logged.data[0].customdata), frac, rtol=1e-6)


def test_entropy_reward_markers_downsampled_fit_on_every_pair():
    steps = np.arange(2000)
    h = 2.5 * np.exp(-steps / 500) + 0.05
    h[1500] = 0.01  # the lowest entropy, once
    reward = -0.4 * np.exp(h) + 0.9
    pairs = pd.DataFrame({"step": steps, "entropy": h, "reward": reward})
    fig = F.entropy_reward_figure(pairs, fit=None, max_points=200)
    markers, law = fig.data[0], fig.data[1]
    assert len(markers.x) <= 200 and 1500 in markers.customdata and 0 in markers.customdata
    assert "-0.4·exp(H) + 0.9" in law.name  # fitted on all 2000 pairs: the exact law
    assert (
        F.heatmap_figure(
            pd.DataFrame({"layer": [f"l{i}" for i in range(50)], "step": 0, "value": 1.0})
        ).layout.height
        == MAX_HEIGHT
    )


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells, split at the pipes that are not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def test_markdown_table_keeps_every_cell_as_text():
    """Run names and values that hold Markdown's or Streamlit's marks stay one cell each
    and read back as written (line breaks as spaces)."""
    from dashboard.view import markdown_table

    nasty = ["a|b", "x_y*z", "`code`", "back\\slash", "$x$", ":red[hot]", "~~s~~", "two\nlines"]
    frame = pd.DataFrame({"value": nasty, "n": range(len(nasty))}, index=nasty[::-1])
    head, rule, *rows = markdown_table(frame, index="run").split("\n")
    assert _cells(head) == ["run", "value", "n"]
    assert rule == "|---|---|---|"
    assert len(rows) == len(nasty)
    for row, key, value, n in zip(rows, nasty[::-1], nasty, range(len(nasty))):
        cells = _cells(row)
        assert len(cells) == 3, row
        assert [_unescape(c) for c in cells] == [
            " ".join(key.split()),
            " ".join(value.split()),
            str(n),
        ]
    # without an index column
    (line,) = markdown_table(frame.iloc[:1]).split("\n")[2:]
    assert [_unescape(c) for c in _cells(line)] == ["a|b", "0"]
