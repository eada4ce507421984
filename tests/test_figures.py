"""Figure builders (dashboard.figures): downsampling, smoothing, CSV, data shaping."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard import figures as F

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------- downsampling
def test_minmax_keeps_every_spike_and_the_ends():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100_000)
    spikes = {1234: 50.0, 56_789: -40.0, 99_998: 30.0}
    for i, v in spikes.items():
        y[i] = v
    idx = F.minmax_indices(y, 1000)
    assert len(idx) <= 1000
    assert np.all(np.diff(idx) > 0)
    assert idx[0] == 0 and idx[-1] == len(y) - 1
    assert set(spikes) <= set(idx.tolist())
    # the drawn series spans the same range as the full one
    assert y[idx].max() == y.max() and y[idx].min() == y.min()
    # a plain stride would lose them
    stride = np.arange(0, len(y), len(y) // 1000)
    assert not set(spikes) <= set(stride.tolist())


def test_minmax_every_bucket_keeps_its_extremes():
    y = np.sin(np.linspace(0, 60, 10_001)) + np.linspace(0, 1, 10_001)
    idx = F.minmax_indices(y, 400)
    kept = set(idx.tolist())
    size = -(-len(y) // 100)
    for start in range(0, len(y), size):
        block = y[start : start + size]
        assert start + int(np.argmax(block)) in kept
        assert start + int(np.argmin(block)) in kept


def test_minmax_short_series_untouched_and_nonfinite_values():
    assert F.minmax_indices(np.arange(10.0), 100).tolist() == list(range(10))
    y = np.ones(1000)
    y[100:200] = np.nan
    y[550] = np.inf
    y[700] = -5.0
    idx = F.minmax_indices(y, 40)
    assert 700 in idx  # finite extreme kept
    assert 550 not in idx  # inf is never chosen as an extreme (plotly cannot draw it)
    with pytest.raises(ValueError, match="max_points"):
        F.minmax_indices(y, 2)


# ------------------------------------------------------------------------ smoothing
def _ema_loop(y, w):
    out, last, k = [], 0.0, 0
    for v in y:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        k += 1
        last = last * w + (1 - w) * v
        out.append(last / (1 - w**k))
    return np.array(out)


def test_smooth_ema_is_tensorboards_debiased_ema():
    rng = np.random.default_rng(1)
    y = np.cumsum(rng.normal(size=500))
    y[[10, 11, 300]] = np.nan
    for w in (0.0, 0.3, 0.9, 0.99):
        np.testing.assert_allclose(F.smooth_ema(y, w), _ema_loop(y, w), rtol=1e-10, atol=1e-12)
    assert F.smooth_ema([3.0, 3.0, 3.0], 0.95).tolist() == pytest.approx([3.0, 3.0, 3.0])
    assert F.smooth_ema([5.0, 0.0], 0.9)[0] == 5.0  # not pulled towards zero
    with pytest.raises(ValueError, match="weight"):
        F.smooth_ema(y, 1.0)


def test_smoothing_reduces_noise():
    rng = np.random.default_rng(2)
    y = np.linspace(0, 1, 2000) + rng.normal(scale=0.3, size=2000)
    s = F.smooth_ema(y, 0.95)
    assert np.std(np.diff(s)) < 0.2 * np.std(np.diff(y))


# --------------------------------------------------------------------- line figure
def _series(n=5000):
    step = np.arange(n)
    y = np.sin(step / 200.0)
    y[3333] = 25.0
    return pd.DataFrame({"series": "a", "step": step, "value": y})


def test_line_figure_downsamples_keeps_spike_and_exact_hover_values():
    df = _series()
    fig = F.line_figure(df, max_points=400)
    (trace,) = fig.data
    assert len(trace.x) <= 400
    assert 3333 in trace.x and 25.0 in trace.customdata
    np.testing.assert_array_equal(trace.customdata, df["value"].to_numpy()[trace.x])
    assert "%{customdata:.10g}" in trace.hovertemplate


def test_line_figure_smoothing_draws_raw_faintly_underneath():
    df = pd.concat([_series().assign(series="a"), _series().assign(series="b")])
    fig = F.line_figure(df, smoothing=0.9, max_points=400, log_x=True, log_y=True)
    assert len(fig.data) == 4
    raw, smooth = fig.data[0], fig.data[1]
    assert raw.hoverinfo == "skip" and raw.showlegend is False
    assert raw.line.color.startswith("rgba(") and raw.line.color.endswith(",0.22)")
    assert smooth.legendgroup == raw.legendgroup == "a"
    np.testing.assert_array_equal(raw.x, smooth.x)  # same points for both
    full = F.smooth_ema(df[df.series == "a"]["value"].to_numpy(), 0.9)
    np.testing.assert_allclose(smooth.y, full[smooth.x])  # smoothed at full resolution
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_line_figure_highlight_and_marks():
    df = pd.DataFrame(
        {"series": ["x"] * 3 + ["y"] * 3, "step": [1, 10, 100] * 2, "value": [1, 2, 3, 3, 2, 1.0]}
    )
    fig = F.line_figure(df, highlight=["y"], marks=[(10, "red", "alert")], log_x=True)
    widths = {t.name: t.line.width for t in fig.data}
    assert widths["y"] > widths["x"]
    (shape,) = fig.layout.shapes
    assert shape.x0 == pytest.approx(1.0)  # log10(10): shapes on log axes use log units


def test_empty_frames_give_a_message_not_an_error():
    empty = pd.DataFrame(columns=["series", "step", "value"])
    for fig in (
        F.line_figure(empty),
        F.heatmap_figure(empty.rename(columns={"series": "layer"})),
        F.info_plane_figure({}),
        F.alert_timeline_figure(pd.DataFrame(columns=["step", "indicator", "severity"])),
    ):
        assert isinstance(fig, go.Figure) and fig.layout.annotations


# ---------------------------------------------------------------------------- CSV
def test_csv_round_trips_what_the_chart_shows():
    df = pd.DataFrame(
        {
            "run": ["a", "a"],
            "layer": pd.Categorical(["l0", "l1"]),
            "step": [1, 2],
            "value": [0.1234567890123, np.nan],
        }
    )
    back = pd.read_csv(io.BytesIO(F.to_csv(df)))
    assert list(back.columns) == ["run", "layer", "step", "value"]
    assert back["value"].iloc[0] == 0.1234567890123 and np.isnan(back["value"].iloc[1])


# -------------------------------------------------------------------- info plane
def _scalar_rows():
    rows = []
    for step in (1, 10, 100):
        for li, layer in enumerate(["l0", "l1"]):
            rows.append((step, "info_plane/ksg/I_XT", layer, 1.0 + li + step / 100))
            rows.append((step, "info_plane/ksg/I_TY", layer, 0.5 * step / 100))
            rows.append((step, "info_plane/bin/I_XT", layer, 9.0))
    rows.append((5, "info_plane/ksg/I_XT", "l0", 3.0))  # no I_TY at step 5: dropped
    df = pd.DataFrame(rows, columns=["step", "metric", "layer", "value"])
    df["metric"] = df["metric"].astype("category")
    df["layer"] = pd.Categorical(df["layer"], categories=["l1", "l0"])  # logged order
    return df


def test_info_plane_frame_pairs_and_converts_units():
    df = _scalar_rows()
    assert F.info_plane_estimators(df["metric"].unique()) == ["ksg"]  # bin lacks I_TY
    wide = F.info_plane_frame(df, "ksg", unit="bits")
    assert list(wide.columns) == ["layer", "step", "I_XT", "I_TY"]
    assert len(wide) == 6 and 5 not in wide["step"].tolist()
    assert list(wide["layer"].cat.categories) == ["l1", "l0"]
    row = wide[(wide.layer == "l1") & (wide.step == 100)].iloc[0]
    assert row["I_XT"] == pytest.approx(3.0 / math.log(2))
    nats = F.info_plane_frame(df, "ksg", unit="nats")
    assert nats["I_TY"].max() == pytest.approx(0.5)


def test_info_plane_frame_takes_each_pair_s_last_recorded_values():
    # a step recorded twice (a resumed run) keeps its last value, a missing (NULL) value
    # does not replace a recorded one, rows without a layer are ignored; the same as
    # pandas' pivot table with "last"
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame(
        {
            "step": rng.integers(0, 40, n),
            "metric": rng.choice(["info_plane/ksg/I_XT", "info_plane/ksg/I_TY", "x"], n),
            "layer": rng.choice(["b", "a", None], n, p=[0.45, 0.45, 0.1]),
            "value": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
        }
    )
    wide = F.info_plane_frame(df, "ksg", unit="nats")
    sub = df[df["metric"].str.startswith("info_plane") & df["layer"].notna()]
    ref = sub.pivot_table(
        index=["layer", "step"], columns="metric", values="value", aggfunc="last"
    ).dropna(how="any")
    assert list(wide["layer"].cat.categories) == list(pd.unique(sub["layer"]))
    assert len(wide) == len(ref) > 20
    for row in wide.itertuples():
        want = ref.loc[(row.layer, row.step)]
        assert (row.I_XT, row.I_TY) == (want["info_plane/ksg/I_XT"], want["info_plane/ksg/I_TY"])
    # layers in logged order, steps ascending within each
    codes = wide["layer"].cat.codes.to_numpy()
    assert (np.diff(codes) >= 0).all()
    assert all(g["step"].is_monotonic_increasing for _, g in wide.groupby("layer", observed=True))
    # the run log's own frames are categorical: the same rows give the same frame
    cat = df.assign(metric=df["metric"].astype("category"), layer=df["layer"].astype("category"))
    again = F.info_plane_frame(cat, "ksg", unit="nats")
    assert list(again["layer"].cat.categories) == ["a", "b"]  # the categories' order
    pd.testing.assert_frame_equal(
        again.sort_values(["layer", "step"], key=lambda c: c.astype(str), ignore_index=True),
        wide.sort_values(["layer", "step"], key=lambda c: c.astype(str), ignore_index=True),
        check_categorical=False,
    )


def test_info_plane_figure_panels_colour_and_animation():
    wide = F.info_plane_frame(_scalar_rows(), "ksg")
    fig = F.info_plane_figure({"tanh": wide, "relu": wide}, animate=True)
    assert [t.name for t in fig.data] == ["l1", "l0", "l1", "l0"]
    assert fig.data[0].xaxis == "x" and fig.data[2].xaxis == "x2"  # side by side
    # one step colour scale on every trace, one colour bar
    assert {(t.marker.cmin, t.marker.cmax) for t in fig.data} == {
        (fig.data[0].marker.cmin, fig.data[0].marker.cmax)
    }
    assert [bool(t.marker.showscale) for t in fig.data] == [True, False, False, False]
    assert [f.name for f in fig.frames] == ["1", "10", "100"]
    assert len(fig.frames[0].data[0].x) == 1 and len(fig.frames[-1].data[0].x) == 3
    # panels side by side are titled with their runs; a lone panel is not (the sidebar
    # names the run, and a title cost its page load)
    assert [a.text for a in fig.layout.annotations] == ["tanh", "relu"]
    assert not F.info_plane_figure({"tanh": wide}).layout.annotations


def test_info_plane_figure_passes_plotly_validation():
    # the figure is assembled from plain dicts without Plotly's validation (it is rebuilt
    # at every live refresh): a misspelt property would reach the browser unnoticed
    import plotly.graph_objects as go

    wide = F.info_plane_frame(_scalar_rows(), "ksg")
    panels = {f"run{i}": wide for i in range(4)}  # a 2 x 3 grid
    fig = F.info_plane_figure(panels, animate=True)
    onsets = {
        "run3": pd.DataFrame(
            {"layer": ["l0"], "step": [10], "I_XT": [1.0], "I_TY": [0.5], "message": ["m"]}
        )
    }
    F.add_onset_markers(fig, onsets, panels, unit="bits")
    spec = fig.to_dict()
    checked = go.Figure(spec)  # raises on an unknown property or a bad value
    assert len(checked.data) == len(spec["data"]) == 9
    assert [t.xaxis for t in checked.data][-3:] == ["x4", "x4", "x4"]  # the fourth panel
    assert checked.layout.xaxis4.title.text == "I(X;T) (bits)"
    assert [a.text for a in checked.layout.annotations] == list(panels)  # panel titles


def test_info_plane_trajectory_with_few_positions_is_drawn_as_points():
    from dashboard.figures.info_plane import FEW_POSITIONS, distinct_positions

    steps = np.arange(60)
    parts = [
        # a layer that moves: a line through its records
        pd.DataFrame(
            {"layer": "moving", "step": steps, "I_XT": 1 + steps / 10, "I_TY": np.sqrt(steps) / 8}
        ),
        # 60 records at two positions (a binned estimate that saturates, as in the digits
        # sample runs): a line would draw a path between them that was never measured
        pd.DataFrame(
            {
                "layer": "stuck",
                "step": steps,
                "I_XT": np.where(steps < 3, 4.2, 5.9),
                "I_TY": np.where(steps < 3, 1.5, 2.3 + 1e-6 * steps),  # jitter below 1%
            }
        ),
        pd.DataFrame({"layer": "two", "step": [0, 100], "I_XT": [0.5, 3.0], "I_TY": [0.1, 0.9]}),
    ]
    wide = pd.concat(parts, ignore_index=True)
    wide["layer"] = pd.Categorical(wide["layer"], categories=["moving", "stuck", "two"])
    fig = F.info_plane_figure({"run": wide}, max_points=60)
    assert {t.name: t.mode for t in fig.data} == {
        "moving": "lines+markers",
        "stuck": "markers",
        "two": "markers",
    }
    stuck = fig.data[1]
    assert len(stuck.x) == 60 and list(stuck.customdata) == list(range(60))  # every record
    assert distinct_positions(stuck.x, stuck.y, resolution=0.01) == 2 < FEW_POSITIONS


# ---------------------------------------------------------------------- heatmaps
def test_heatmap_buckets_many_steps_by_mean():
    steps = np.arange(1000)
    df = pd.DataFrame(
        {
            "layer": np.repeat(["a", "b"], 1000),
            "step": np.tile(steps, 2),
            "value": np.concatenate([steps * 1.0, -steps * 1.0]),
        }
    )
    fig = F.heatmap_figure(df, max_columns=100)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 100)
    assert z[0, 0] == pytest.approx(4.5) and z[1, -1] == pytest.approx(-994.5)
    assert list(fig.data[0].y) == ["a", "b"]


def test_histogram_grid_conserves_mass_and_reads_quantiles():
    rows = [
        {"id": 1, "step": 0, "kind": "histogram", "data": {"edges": [0, 1, 2], "counts": [3, 1]}},
        {"id": 2, "step": 5, "kind": "histogram", "data": {"edges": [0, 2, 4], "counts": [0, 8]}},
        {
            "id": 3,
            "step": 9,
            "kind": "quantiles",
            "data": {"q": [0.0, 0.5, 1.0], "values": [0.0, 1.0, 4.0]},
        },
    ]
    steps, edges, frac = F.histogram_grid(pd.DataFrame(rows), bins=8)
    assert steps.tolist() == [0, 5, 9]
    assert edges[0] == 0 and edges[-1] == 4 and frac.shape == (8, 3)
    np.testing.assert_allclose(frac.sum(axis=0), 1.0)
    assert frac[:2, 0].sum() == pytest.approx(0.75)  # 3 of 4 counts in [0, 1)
    assert frac[4:, 1].sum() == pytest.approx(1.0)  # all mass in [2, 4)
    assert frac[:2, 2].sum() == pytest.approx(0.5)  # median at 1.0


def test_attention_frame_and_heatmap():
    rows = []
    for step in (0, 10):
        for layer in ("b0", "b1", "b2"):
            for h in range(2):
                rows.append((step, f"attn/entropy/h{h}", layer, step + h))
                rows.append((step, f"attn/entropy_norm/h{h}", layer, 0.5))
        rows.append((step, "attn/entropy", "b0", 1.0))
    df = pd.DataFrame(rows, columns=["step", "metric", "layer", "value"])
    df["metric"] = df["metric"].astype("category")
    heads = F.attention_frame(df)
    assert len(heads) == 12 and sorted(heads["head"].unique()) == [0, 1]
    assert len(F.attention_frame(df, normalized=True)) == 12
    fig = F.attention_heatmap_figure(heads)
    assert np.asarray(fig.data[0].z).shape == (3, 2)
    assert np.asarray(fig.data[0].z)[0].tolist() == [10, 11]  # opens on the last step
    assert [f.name for f in fig.frames] == ["0", "10"]


# ------------------------------------------------------------ language-model laws
def test_entropy_reward_fit_recovers_the_law():
    h = np.linspace(0.2, 2.0, 30)
    r = -0.4 * np.exp(h) + 1.1
    a, b = F.fit_entropy_reward(h, r)
    assert a == pytest.approx(0.4) and b == pytest.approx(1.1)
    assert F.fit_entropy_reward([1.0, 1.0], [0.0, 0.0]) is None
    fig = F.entropy_reward_figure(pd.DataFrame({"step": range(30), "entropy": h, "reward": r}))
    fit = fig.data[1]
    assert "fitted here" in fit.name
    np.testing.assert_allclose(fit.y[0], b - a)  # H = 0: the predicted ceiling
    assert fig.layout.shapes[0].y0 == pytest.approx(b - a)


def test_units():
    x = np.array([math.log(2), 2 * math.log(2)])
    np.testing.assert_allclose(F.convert_units(x, "repr/dse", "bits"), [1, 2])
    np.testing.assert_allclose(F.convert_units(x, "attn/entropy/h3", "bits"), [1, 2])
    np.testing.assert_allclose(F.convert_units(x, "attn/entropy_norm/h3", "bits"), x)
    np.testing.assert_allclose(F.convert_units(x, "repr/effective_rank", "bits"), x)
    np.testing.assert_allclose(F.convert_units(x, "lm/token_entropy/q05", "nats"), x)
    with pytest.raises(ValueError, match="unit"):
        F.convert_units(x, "repr/dse", "bans")


# --------------------------------------------------------------------- collapse
def test_indicator_status_is_the_worst_severity():
    alerts = pd.DataFrame(
        {
            "indicator": ["rank_collapse", "rank_collapse", "saturation", "compression_onset"],
            "severity": ["warning", "critical", "warning", "info"],
            "step": [10, 20, 5, 7],
            "message": ["m1", "m2", "m3", "m4"],
        }
    )
    st = F.indicator_status(
        alerts, ["rank_collapse", "saturation", "compression_onset", "memorisation"]
    )
    got = dict(zip(st["indicator"], st["status"]))
    assert got == {
        "rank_collapse": "critical",
        "saturation": "warning",
        "compression_onset": "info",
        "memorisation": "ok",
    }
    # a row of a run before 0.2 names the top level "collapsed"
    old = F.indicator_status(alerts.replace({"critical": "collapsed"}), ["rank_collapse"])
    assert old["status"].tolist() == ["critical"]
    row = st.set_index("indicator").loc["rank_collapse"]
    assert (row["alerts"], row["first_step"], row["last_step"], row["last_message"]) == (
        2,
        10,
        20,
        "m2",
    )


def test_every_indicator_is_explained():
    from diagnostics.schema import INDICATORS

    for ind in INDICATORS:
        info = F.INDICATOR_INFO[ind]
        assert info["text"] and info["source"] and info["series"]


def test_figures_import_neither_streamlit_nor_torch():
    code = (
        "import sys, dashboard.figures; print('streamlit' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("smoothing", [0.0, 0.6])
def test_line_band_and_timeline_figures_pass_plotly_validation(smoothing):
    # these figures are assembled from plain dicts without Plotly's validation (they are
    # rebuilt at every live refresh): a misspelt property would reach the browser unnoticed
    import plotly.graph_objects as go

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "series": np.repeat(["a", "b"], 300),
            "step": np.tile(np.arange(300), 2),
            "value": rng.normal(size=600),
        }
    )
    lines = F.line_figure(
        frame,
        smoothing=smoothing,
        log_x=True,
        title="t",
        y_title="y",
        highlight=["a"],
        marks=[(10, "#d62728", "alert")],
        max_points=100,
    )
    wide = pd.DataFrame(
        {"step": np.arange(50), **{c: rng.random(50) for c in ("mean", "q25", "q50", "q75")}}
    )
    band = F.quantile_band_figure({"run": wide}, log_x=True, y_title="H")
    alerts = pd.DataFrame(
        {
            "id": [1, 2],
            "step": [5, 9],
            "indicator": ["rank_collapse", "loss_divergence"],
            "severity": ["warning", "critical"],
            "layer": ["l0", None],
            "message": ["m1", "m2"],
            "evidence": [{"metric": "x"}, {}],
            "run": ["r", "r"],
        }
    )
    timeline = F.alert_timeline_figure(alerts, log_x=True)
    for fig, n in ((lines, 4 if smoothing else 2), (band, 4), (timeline, 2)):
        spec = fig.to_dict()
        checked = go.Figure(spec)  # raises on an unknown property or a bad value
        assert len(checked.data) == n
        assert checked.layout.xaxis.type == "log"
    assert lines.layout.title.text == "t" and lines.layout.yaxis.title.text == "y"
    assert [s.x0 for s in go.Figure(lines.to_dict()).layout.shapes] == [1.0]  # log10(10)
    order = [i for i in F.INDICATOR_INFO if i in ("rank_collapse", "loss_divergence")]
    assert list(go.Figure(timeline.to_dict()).layout.yaxis.categoryarray) == order[::-1]
