"""The dashboard in Streamlit's AppTest: every page on synthetic runs (from the checkout's
app.py and from the package's own file), empty states, broken files, URL state, live
tailing, the server helper, and no torch import."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.serve import serve
from diagnostics.runlog import RunReader, RunWriter, open_run
from tests.plotly_spec import names, specs
from tests.synthetic_runs import IB_STEPS

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app.py"  # the checkout's entry point; it calls dashboard.app.main()
PACKAGE_APP = REPO / "dashboard" / "app.py"  # what `infoscope dashboard` runs
ALL = ["ib/tanh", "ib/relu", "lm/grpo", "bad"]
PAGES = {  # relative to the package's app.py
    "runs": "app_pages/runs.py",
    "information-plane": "app_pages/information_plane.py",
    "representations": "app_pages/representations.py",
    "language-model": "app_pages/language_model.py",
    "collapse": "app_pages/collapse.py",
    "compare": "app_pages/compare.py",
}


def open_page(root, page, monkeypatch, *, app=APP, **params) -> AppTest:
    monkeypatch.setenv("INFOSCOPE_ROOT", str(root))
    at = AppTest.from_file(str(app), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page != "runs":
        at.switch_page(str((PACKAGE_APP.parent / PAGES[page]).relative_to(app.parent))).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.error, *at.warning)]
    return "\n".join(str(p) for p in parts)


def logged(root, run, metric, layer=None):
    with open_run(root / run) as r:
        df = r.scalars(metrics=[metric])
    if layer is not None:
        df = df[df["layer"] == layer]
    return df.sort_values("step")


# ------------------------------------------------------------------------ pages
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_and_reports_the_broken_run(runs_root, monkeypatch, page):
    at = open_page(runs_root, page, monkeypatch, run=ALL)
    errors = [e.value for e in at.error]
    assert any("bad" in e and "not an infoscope run" in e for e in errors), errors
    if page != "runs":
        assert specs(at), f"{page}: no chart"
        # each chart goes out in Streamlit's theme without plotly.py's default template
        # (dashboard.view._Sent: the browser would copy and apply it at every draw)
        for el in at.get("plotly_chart"):
            assert el.proto.theme == "streamlit", page
            assert "template" not in json.loads(el.proto.spec)["layout"], page


def test_a_chart_is_sent_without_the_template_and_the_figure_keeps_it():
    from dashboard.view import _Sent

    fig = go.Figure(go.Scatter(x=np.arange(5.0), y=np.arange(5.0) ** 2, name="s"))
    fig.update_layout(height=300, title="t")
    sent = _Sent(fig).to_dict()
    assert "template" not in sent["layout"]
    assert "template" in fig.to_dict()["layout"]  # the caller's figure is left as it was
    mine = fig.to_dict()
    mine["layout"].pop("template")
    assert json.dumps(sent, sort_keys=True, default=str) == json.dumps(
        mine, sort_keys=True, default=str
    )


@pytest.mark.parametrize("page", list(PAGES))
def test_the_package_app_runs_every_page(runs_root, monkeypatch, page):
    """The file `infoscope dashboard` runs (inside the package, as a wheel installs it)
    finds its pages as the checkout's app.py does."""
    at = open_page(runs_root, page, monkeypatch, app=PACKAGE_APP, run=["ib/tanh", "lm/grpo"])
    errors = [e.value for e in at.error]  # (the runs page lists the unreadable runs too)
    assert not any("ib/tanh" in e or "lm/grpo" in e for e in errors), errors
    if page == "runs":
        assert {"ib/tanh", "lm/grpo"} <= set(at.dataframe[0].value["run"])
    else:
        assert specs(at), f"{page}: no chart"


def test_runs_page_lists_every_run_and_explains_unreadable_ones(runs_root, monkeypatch):
    at = open_page(runs_root, "runs", monkeypatch, run=["ib/tanh"])
    table = at.dataframe[0].value
    assert set(table["run"]) == {"bad", "foreign", "ib/relu", "ib/tanh", "lm/grpo"}
    assert set(table.loc[table["run"].isin(["bad", "foreign"]), "status"]) == {"unreadable"}
    assert table.loc[table["run"] == "lm/grpo", "critical"].item() == 1
    errors = "\n".join(e.value for e in at.error)
    assert "foreign" in errors and "no 'meta' table" in errors
    assert "not a database" in errors
    # details of the picked run: metadata and the metrics present
    body = texts(at)
    assert "info_plane/binning/I_XT" in body and "repr/dse" in body


def test_information_plane_bits_by_default_and_nats_on_request(runs_root, monkeypatch):
    at = open_page(runs_root, "information-plane", monkeypatch, run=["ib/tanh", "ib/relu"])
    (spec,) = specs(at)
    layers = [f"layers.{i}" for i in range(5)]
    assert names(spec)[:5] == layers and names(spec)[5:10] == layers  # two runs side by side
    assert spec["layout"]["xaxis"]["title"]["text"] == "I(X;T) (bits)"
    xt = logged(runs_root, "ib/tanh", "info_plane/binning/I_XT", "layers.2")["value"].to_numpy()
    ty = logged(runs_root, "ib/tanh", "info_plane/binning/I_TY", "layers.2")["value"].to_numpy()
    trace = spec["data"][2]
    np.testing.assert_allclose(trace["x"], xt / math.log(2))
    np.testing.assert_allclose(trace["y"], ty / math.log(2))
    assert trace["marker"]["colorscale"] and len(trace["marker"]["color"]) == len(xt)  # by step
    # the tanh run's compression onset: a star on layers.4's trajectory at the alert's step
    (onset,) = [t for t in spec["data"] if t["name"] == "compression onset"]
    assert onset["marker"]["symbol"] == "star" and onset["xaxis"] == "x"  # the tanh panel
    at_onset = logged(runs_root, "ib/tanh", "info_plane/binning/I_XT", "layers.4")
    x_onset = at_onset.loc[at_onset["step"] == 367, "value"].item() / math.log(2)
    np.testing.assert_allclose(onset["x"], [x_onset])
    assert (
        "367" in str(onset["customdata"][0][1]) and "compression phase" in onset["customdata"][0][2]
    )

    at = open_page(runs_root, "information-plane", monkeypatch, run=["ib/tanh"], unit="nats")
    (spec,) = specs(at)
    np.testing.assert_allclose(spec["data"][2]["x"], xt)


def test_information_plane_estimator_choice_and_step_limit(runs_root, monkeypatch):
    at = open_page(
        runs_root,
        "information-plane",
        monkeypatch,
        run=["ib/tanh", "ib/relu"],
        ip_est="kde",
        ip_upto=str(IB_STEPS[20]),
    )
    assert at.selectbox(key="ip_est").value == "kde"
    assert "ib/relu: no `kde`" in texts(at)
    (spec,) = specs(at)
    assert len(spec["data"]) == 5  # only tanh logged kde
    steps = np.concatenate([t["customdata"] for t in spec["data"]])
    assert steps.max() == IB_STEPS[20]
    assert "compression onset" not in names(spec)  # step 367 is beyond the steps shown


def test_information_plane_draws_six_evenly_spaced_layers_by_default(monkeypatch, tmp_path):
    from dashboard.figures.info_plane import DEFAULT_LAYERS

    assert DEFAULT_LAYERS == 6
    layers = [f"block.{i}" for i in range(12)]
    with RunWriter(tmp_path / "deep") as w:
        for step in (0, 10, 20):
            for i, layer in enumerate(layers):
                w.log(step, {"info_plane/binning/I_XT": 1.0 + i + step / 10}, layer=layer)
                w.log(step, {"info_plane/binning/I_TY": 0.1 * i + step / 100}, layer=layer)
    at = open_page(tmp_path, "information-plane", monkeypatch, run=["deep"])
    (spec,) = specs(at)
    shown = [layers[i] for i in (0, 2, 4, 7, 9, 11)]  # first, last and evenly between
    assert names(spec) == shown
    assert at.multiselect(key="ip_layers").value == shown
    at = open_page(tmp_path, "information-plane", monkeypatch, run=["deep"], ip_layers=layers)
    assert names(specs(at)[0]) == layers  # more on request


def test_information_plane_empty_state(runs_root, monkeypatch):
    at = open_page(runs_root, "information-plane", monkeypatch, run=["lm/grpo"])
    assert not specs(at)
    assert any("No information-plane metrics" in i.value for i in at.info)
    # the empty state offers the runs that have an information plane, and picks them
    (button,) = [b for b in at.button if "information plane" in b.label]
    assert "ib/tanh" in button.label and "ib/relu" in button.label
    button.click().run()
    assert not at.exception
    assert set(at.session_state["run"]) == {"ib/tanh", "ib/relu"}
    assert specs(at) and not any("No information-plane metrics" in i.value for i in at.info)


def test_language_model_empty_state_offers_lm_runs(runs_root, monkeypatch):
    at = open_page(runs_root, "language-model", monkeypatch, run=["ib/tanh"])
    (button,) = [b for b in at.button if "language-model" in b.label]
    assert "lm/grpo" in button.label and "ib/relu" not in button.label
    button.click().run()
    assert not at.exception and at.session_state["run"] == ["lm/grpo"]
    assert specs(at)


def test_representations_lines_heatmap_and_small_multiples(runs_root, monkeypatch):
    at = open_page(
        runs_root, "representations", monkeypatch, run=["ib/tanh"], rep_metric="repr/effective_rank"
    )
    (lines,) = specs(at)  # the lines; the heatmap is a view of its own
    assert names(lines) == [f"layers.{i}" for i in range(5)]
    at = open_page(
        runs_root,
        "representations",
        monkeypatch,
        run=["ib/tanh"],
        rep_metric="repr/effective_rank",
        rep_view="Heatmap",
    )
    (heat,) = specs(at)
    heat_trace = heat["data"][0]
    assert heat_trace["type"] == "heatmap"
    n_steps = logged(runs_root, "ib/tanh", "repr/effective_rank")["step"].nunique()
    assert np.asarray(heat_trace["z"]).shape == (5, n_steps)
    # effective rank is not an information quantity: no unit conversion
    er = logged(runs_root, "ib/tanh", "repr/effective_rank", "layers.0")["value"].to_numpy()
    np.testing.assert_allclose(lines["data"][0]["customdata"], er)

    at = open_page(
        runs_root,
        "representations",
        monkeypatch,
        run=["ib/tanh", "ib/relu"],
        rep_view="Small multiples",
        rep_layers=["layers.0", "layers.4"],
    )
    (multi,) = specs(at)
    titles = [a["text"] for a in multi["layout"]["annotations"]]
    assert titles == ["layers.0", "layers.4"]
    assert set(names(multi)) == {"ib/tanh", "ib/relu"}


def test_smoothing_draws_faint_raw_curve_under_smoothed(runs_root, monkeypatch):
    at = open_page(
        runs_root, "compare", monkeypatch, run=["ib/tanh"], cmp_metric="train/loss", smooth="0.8"
    )
    (spec,) = specs(at)
    raw, smooth = spec["data"]
    assert raw["hoverinfo"] == "skip" and "0.22" in raw["line"]["color"]
    assert smooth["showlegend"] is True
    loss = logged(runs_root, "ib/tanh", "train/loss")["value"].to_numpy()
    np.testing.assert_allclose(raw["y"], loss)
    np.testing.assert_allclose(smooth["customdata"], loss)  # tooltips carry exact values
    assert not np.allclose(smooth["y"], loss)


def test_language_model_page(runs_root, monkeypatch):
    at = open_page(runs_root, "language-model", monkeypatch, run=["lm/grpo"], unit="nats")
    assert [t.label for t in at.tabs] == [
        "Token entropy", "Entropy distribution", "Top-k", "Attention", "Entropy vs reward",
        "Covariance",
    ]  # fmt: skip
    (band,) = specs(at)  # only the open tab (the first) is drawn
    assert {"lm/grpo mean", "lm/grpo median", "lm/grpo q05–q95"} <= set(names(band))
    mean = logged(runs_root, "lm/grpo", "lm/token_entropy/mean")["value"].to_numpy()
    np.testing.assert_allclose(
        next(t for t in band["data"] if t.get("name") == "lm/grpo mean")["y"], mean
    )

    def section(name):
        return specs(
            open_page(runs_root, "language-model", monkeypatch, run=["lm/grpo"], lm_section=name)
        )

    # the full distribution: every step's shares sum to 1
    (dist,) = section("Entropy distribution")
    hist = dist["data"][0]
    assert hist["type"] == "heatmap"
    np.testing.assert_allclose(np.nansum(np.asarray(hist["z"]), axis=0), 1.0, atol=1e-6)

    topk = section("Top-k")
    assert len(topk) == 2 and "lm/topk_mass" in names(topk[1])
    # attention: layer x head, one frame per step
    attn = next(s for s in section("Attention") if s.get("frames"))
    assert attn["data"][0]["type"] == "heatmap"
    assert np.asarray(attn["data"][0]["z"]).shape == (4, 4)
    assert len(attn["frames"]) == 41
    # entropy vs reward with the logged law and its ceiling
    (er,) = section("Entropy vs reward")
    assert any("exp(H)" in (n or "") for n in names(er))
    assert any("(logged)" in n for n in names(er) if n)
    assert any("0.53" in a["text"] for a in er["layout"]["annotations"])
    (cov,) = section("Covariance")
    assert "rl/cov/pos_share" in names(cov)  # single run: plain metric names


def test_collapse_page_cards_timeline_and_triggering_series(runs_root, monkeypatch):
    at = open_page(runs_root, "collapse", monkeypatch, run=["lm/grpo", "ib/tanh"])
    body = texts(at)
    assert "Token-entropy collapse** &nbsp; :red[✖ critical]" in body
    assert "Rank collapse** &nbsp;" not in body  # no card for an indicator that is quiet
    (quiet,) = [m.value for m in at.markdown if m.value.startswith(":green[● ok]")]
    assert "no alerts:" in quiet and "Rank collapse" in quiet
    assert "Token-entropy collapse" not in quiet
    # every indicator described (the popover: Cui et al. for the token entropy, which
    # fired; Zhai et al. for the attention entropy, which did not)
    assert "Cui et al. 2025" in body and "Zhai et al. 2023" in body
    assert [t.label for t in at.tabs] == ["Timeline", "Alert detail"]
    (timeline,) = specs(at)  # the timeline tab opens first; only the open tab is drawn
    assert set(names(timeline)) == {"info", "warning", "critical"}
    critical = next(t for t in timeline["data"] if t["name"] == "critical")
    assert list(critical["y"]) == ["token_entropy_collapse"] and list(critical["x"]) == [120]
    assert [str(v) for v in critical["customdata"][0][3:]] == ["lm/grpo", "2"]  # run, id
    assert not at.json  # the evidence belongs to the detail tab
    table = next(df.value for df in at.dataframe if "message" in df.value)
    assert list(table["severity"]) == ["critical", "warning", "warning", "warning", "info"]
    assert any(
        "probe_failure" in str(df.value["kind"].tolist())
        for df in at.dataframe
        if "kind" in df.value
    )
    # the detail tab: the default alert is the most severe (a run written before 0.2:
    # "series", no threshold in the series' units): the evidence over the whole run, the
    # step marked
    at = open_page(
        runs_root, "collapse", monkeypatch, run=["lm/grpo", "ib/tanh"], col_tab="Alert detail"
    )
    (series,) = specs(at)
    assert names(series) == [
        "lm/token_entropy/mean (whole run)",
        "lm/token_entropy/mean (evidence)",
    ]
    assert [s["x0"] for s in series["layout"]["shapes"]] == [120]  # no threshold line
    assert "before alerts recorded their threshold" in texts(at)
    assert at.json, "evidence shown"


def explanation(at) -> dict:
    (spec,) = [s for s in specs(at) if any("(whole run)" in (n or "") for n in names(s))]
    return spec


def test_collapse_table_row_explains_the_alert_with_its_threshold(runs_root, monkeypatch):
    """Selecting the compression onset in the alert table draws its evidence, the
    whole-run I(X;T) of that layer, the threshold labelled with the rule, the step, and
    I(T;Y) in a second row."""
    at = open_page(runs_root, "collapse", monkeypatch, run=["lm/grpo", "ib/tanh"])
    table = next(df.value for df in at.dataframe if "message" in df.value)
    row = int(np.flatnonzero(table["indicator"] == "compression_onset")[0])
    at.session_state["col_table"] = {"selection": {"rows": [row], "columns": []}}
    at.run()
    assert not at.exception
    assert at.selectbox(key="col_alert").value.startswith("ib/tanh · step 367 · compression_onset")
    spec = explanation(at)
    with open_run(runs_root / "ib" / "tanh") as r:
        (alert,) = [a for _, a in r.alerts().iterrows() if a["indicator"] == "compression_onset"]
    ev = alert["evidence"]
    evid = next(
        t for t in spec["data"] if t["name"] == "info_plane/binning/I_XT · layers.4 (evidence)"
    )
    np.testing.assert_allclose(evid["y"], np.array(ev["values"]) / math.log(2))  # bits
    whole = next(t for t in spec["data"] if t["name"].endswith("layers.4 (whole run)"))
    xt = logged(runs_root, "ib/tanh", "info_plane/binning/I_XT", "layers.4")["value"].to_numpy()
    np.testing.assert_allclose(whole["y"], xt / math.log(2))
    shapes = spec["layout"]["shapes"]
    (threshold,) = [s for s in shapes if s["xref"] == "x domain"]
    assert threshold["y0"] == pytest.approx(ev["threshold"] / math.log(2))
    assert {s["x0"] for s in shapes if s["xref"] != "x domain"} == {367}
    label = next(a["text"] for a in spec["layout"]["annotations"] if "threshold" in a["text"])
    assert "fires below" in label and "compression_drop" in label
    ity = next(t for t in spec["data"] if t["name"] == "info_plane/binning/I_TY (evidence)")
    assert ity["yaxis"] == "y2"
    assert spec["layout"]["title"]["text"].startswith("compression phase")


def test_collapse_timeline_marker_and_card_pick_the_alert(runs_root, monkeypatch):
    at = open_page(runs_root, "collapse", monkeypatch, run=["lm/grpo", "ib/tanh"])
    # a click on a timeline marker: Plotly's selection event carries the marker's customdata
    timeline = specs(at)[0]
    warning = next(t for t in timeline["data"] if t["name"] == "warning")
    i = [str(c[3]) for c in warning["customdata"]].index("ib/tanh")
    point = {"x": int(warning["x"][i]), "customdata": [str(c) for c in warning["customdata"][i]]}
    at.session_state["col_timeline"] = {
        "selection": {"points": [point], "point_indices": [i], "box": [], "lasso": []}
    }
    at.run()
    assert not at.exception
    assert at.selectbox(key="col_alert").value == (
        "ib/tanh · step 1000 · saturation (warning) · layers.4 · #2"
    )
    (spec,) = specs(at)  # the pick opened the detail tab: the explanation alone is drawn
    assert names(spec)[0].endswith("(whole run)")
    assert spec["layout"]["title"]["text"].startswith("48% of layers.4 units saturated")
    (threshold,) = [s for s in spec["layout"]["shapes"] if s["xref"] == "x domain"]
    assert threshold["y0"] == 0.4  # not an information quantity: no unit conversion
    # the card's button picks that indicator's worst alert
    next(b for b in at.button if b.key == "col_card_attention_collapse").click().run()
    assert not at.exception
    assert "attention_collapse" in at.selectbox(key="col_alert").value
    assert explanation(at)["layout"]["title"]["text"].startswith("2 of 4 heads")


def test_collapse_picking_an_alert_opens_its_detail(runs_root, monkeypatch):
    at = open_page(runs_root, "collapse", monkeypatch, run=["lm/grpo", "ib/tanh"])
    assert names(specs(at)[0])[0] in ("info", "warning", "critical")  # the timeline
    label = "ib/tanh · step 1000 · saturation (warning) · layers.4 · #2"
    at.selectbox(key="col_alert").set_value(label).run()
    assert not at.exception
    (spec,) = specs(at)
    assert spec["layout"]["title"]["text"].startswith("48% of layers.4 units saturated")
    # a live refresh keeps the tab the reader is on
    at.run()
    (again,) = specs(at)
    assert again["layout"]["title"]["text"] == spec["layout"]["title"]["text"]


def test_collapse_alert_detail_from_the_url(runs_root, monkeypatch):
    at = open_page(
        runs_root,
        "collapse",
        monkeypatch,
        run=["ib/tanh"],
        col_alert="ib/tanh · step 1000 · saturation (warning) · layers.4 · #2",
    )
    spec = explanation(at)
    assert [t["name"] for t in spec["data"]] == ["act/saturated_frac · layers.4 (whole run)"]
    sat = logged(runs_root, "ib/tanh", "act/saturated_frac", "layers.4")["value"].to_numpy()
    np.testing.assert_allclose(spec["data"][0]["y"], sat)


def test_collapse_without_alerts(runs_root, monkeypatch, tmp_path):
    with RunWriter(tmp_path / "quiet") as w:
        w.log(1, {"train/loss": 1.0})
    at = open_page(tmp_path, "collapse", monkeypatch, run=["quiet"])
    assert any("No alerts" in s.value for s in at.success)


def test_compare_aligns_runs_by_step(runs_root, monkeypatch):
    at = open_page(
        runs_root,
        "compare",
        monkeypatch,
        run=["ib/tanh", "ib/relu"],
        cmp_metric="repr/dse",
        cmp_layer="layers.3",
    )
    (spec,) = specs(at)
    assert names(spec) == ["ib/tanh", "ib/relu"]
    for trace, run in zip(spec["data"], ["ib/tanh", "ib/relu"]):
        df = logged(runs_root, run, "repr/dse", "layers.3")
        np.testing.assert_array_equal(trace["x"], df["step"].to_numpy())
        np.testing.assert_allclose(trace["customdata"], df["value"].to_numpy() / math.log(2))
    # last step and value, min, max per run: a Markdown table
    (table,) = [m.value for m in at.markdown if m.value.startswith("| run |")]
    head, rule, *rows = [
        [c.strip() for c in line.strip("|").split(" | ")] for line in table.split("\n")
    ]
    assert head == ["run", "last step", "last value", "min", "max", "points"]
    assert [r[0].replace("\\", "") for r in rows] == ["ib/tanh", "ib/relu"]
    assert [int(r[5]) for r in rows] == [len(t["x"]) for t in spec["data"]]
    for r, run in zip(rows, ["ib/tanh", "ib/relu"]):
        df = logged(runs_root, run, "repr/dse", "layers.3")
        assert int(r[1]) == df["step"].iloc[-1]
        assert float(r[4]) == pytest.approx(df["value"].max() / math.log(2))


# ------------------------------------------------------------------ empty / broken
@pytest.mark.parametrize("page", list(PAGES))
def test_empty_root_says_what_to_do(tmp_path, monkeypatch, page):
    at = open_page(tmp_path, page, monkeypatch)
    assert any("No runs below" in i.value and "RunWriter" in i.value for i in at.info)


def test_missing_root(tmp_path, monkeypatch):
    at = open_page(tmp_path / "nowhere", "information-plane", monkeypatch)
    assert any("does not exist" in e.value for e in at.error)


def test_only_broken_runs_selected(runs_root, monkeypatch):
    at = open_page(runs_root, "representations", monkeypatch, run=["bad", "foreign"])
    assert len(at.error) == 2 and not specs(at)


def test_root_from_command_line(runs_root, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["app.py", "--root", str(runs_root)])
    at = open_page(tmp_path, "runs", monkeypatch)  # env says tmp_path; argv wins
    assert "ib/tanh" in set(at.dataframe[0].value["run"])


def test_reads_only_below_the_root(runs_root, monkeypatch, tmp_path):
    from dashboard.data import inside_root

    base = runs_root.resolve()
    assert inside_root(base, "ib/tanh") == base / "ib" / "tanh"
    for rel in ("../x", "/etc", "ib/../../x", ""):
        assert inside_root(base, rel) is None
    outside = tmp_path / "outside"
    with RunWriter(outside) as w:
        w.log(0, {"a": 1.0})
    link = runs_root / "link"
    link.symlink_to(outside, target_is_directory=True)
    try:
        assert inside_root(base, "link") is None
        at = open_page(runs_root, "runs", monkeypatch, run=["../outside"])
        assert "link" not in set(at.dataframe[0].value["run"])
        # ignored: the page's default selection instead
        assert at.multiselect(key="run").value == ["ib/relu", "ib/tanh"]
    finally:
        link.unlink()


# ----------------------------------------------------------------------- URL state
def test_a_url_reproduces_the_view(runs_root, monkeypatch):
    # (the browser test checks that changing a widget writes the URL; AppTest has no
    # frontend to do that)
    qp = {"run": ["ib/tanh"], "smooth": "0.6", "logx": "true", "cmp_metric": "repr/dse"}
    at = open_page(runs_root, "compare", monkeypatch, **qp)
    (spec,) = specs(at)
    assert spec["layout"]["xaxis"]["type"] == "log"
    assert at.selectbox(key="cmp_metric").value == "repr/dse"
    assert at.slider(key="smooth").value == pytest.approx(0.6)
    assert at.toggle(key="logx").value is True
    assert len(spec["data"]) == 2  # smoothed curve over the faint raw one
    assert dict(at.query_params) == qp | {"run": "ib/tanh"}


# ---------------------------------------------------------------------- live tail
def test_live_refresh_reads_only_new_rows(tmp_path, monkeypatch):
    w = RunWriter(tmp_path / "live", flush_seconds=0)
    for s in range(10):
        w.log(s, {"train/loss": 1.0 / (s + 1)})
    w.flush()
    try:
        at = open_page(tmp_path, "compare", monkeypatch, run=["live"], cmp_metric="train/loss")
        assert "live" in texts(at)  # the live caption
        (spec,) = specs(at)
        assert spec["data"][0]["x"].max() == 9
        calls = []
        original = RunReader.scalars

        def spy(self, **kw):
            calls.append(kw.get("after_id", 0))
            return original(self, **kw)

        monkeypatch.setattr(RunReader, "scalars", spy)
        for s in range(10, 15):
            w.log(s, {"train/loss": 1.0 / (s + 1)})
        w.flush()
        at.run()
        (spec,) = specs(at)
        assert spec["data"][0]["x"].max() == 14
        assert calls and all(a > 0 for a in calls), calls  # only rows after the last seen id
    finally:
        w.close()


# ------------------------------------------------------------------------ server
@pytest.mark.slow
def test_serve_answers_until_the_block_ends(runs_root):
    with serve(runs_root) as url:
        with urllib.request.urlopen(f"{url}/information-plane", timeout=30) as page:
            assert page.status == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=5)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH is Python 3.11's")
def test_serve_runs_its_own_dashboard_from_any_folder(runs_root, tmp_path, monkeypatch):
    """Started from a folder that holds another ``dashboard`` package (e.g. another
    checkout's root), the server still imports the one ``serve`` belongs to: ``python -m``
    would put the working directory ahead of ``PYTHONPATH``."""
    other = tmp_path / "elsewhere" / "dashboard"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("raise ImportError('the wrong dashboard package')\n")
    monkeypatch.chdir(other.parent)
    with serve(runs_root) as url:
        with urllib.request.urlopen(f"{url}/information-plane", timeout=30) as page:
            assert page.status == 200


def test_serve_says_why_streamlit_did_not_start(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)exited with code.*missing.py"):
        with serve(tmp_path, app=tmp_path / "missing.py"):
            pass


# --------------------------------------------------------------------- no torch
@pytest.mark.slow
def test_app_never_imports_torch(runs_root):
    """Every page on every kind of run, and every module of the dashboard package (the
    CLI commands, the server helper, the figures) but the sample recorders
    (``dashboard.samples``, which train models), leave torch unimported."""
    code = f"""
import importlib, os, pkgutil, sys
os.environ["INFOSCOPE_ROOT"] = {str(runs_root)!r}
import dashboard
for mod in pkgutil.walk_packages(dashboard.__path__, "dashboard."):
    # pages are scripts (run below); dashboard.samples trains models (torch by design)
    if not mod.name.startswith(("dashboard.app_pages.", "dashboard.samples")):
        importlib.import_module(mod.name)
from streamlit.testing.v1 import AppTest
for page in {[str((PACKAGE_APP.parent / p).relative_to(APP.parent)) for p in PAGES.values()]!r}:
    at = AppTest.from_file({str(APP)!r}, default_timeout=60)
    at.query_params["run"] = {ALL!r}
    at.run()
    at.switch_page(page).run()
    assert not at.exception, page
print(sorted(sys.modules.keys() & {{"dashboard.commands", "dashboard.serve"}}), "torch" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=APP.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['dashboard.commands', 'dashboard.serve'] False"


def test_display_settings_are_read_from_the_url_and_bad_values_ignored(runs_root, monkeypatch):
    at = open_page(
        runs_root,
        "runs",
        monkeypatch,
        run="ib/tanh",
        unit="nats",
        smooth="0.5",
        logx="true",
        pts="5000",
        every="7",
        live="maybe",
    )
    state = at.session_state
    assert (state["unit"], state["smooth"], state["logx"], state["pts"]) == (
        "nats",
        0.5,
        True,
        5000,
    )
    assert state["every"] == 2 and state["live"] is True  # not values they may take: defaults
    assert at.session_state["run"] == ["ib/tanh"]
    # the URL names what differs from the defaults, in the form it was read from
    assert at.query_params["unit"] == "nats" and at.query_params["logx"] == "true"
    assert "every" not in at.query_params and "live" not in at.query_params


def test_no_page_relies_on_streamlit_magic():
    # `infoscope dashboard` serves with runner.magicEnabled off (a session's first run
    # then compiles the scripts without rewriting them): a bare expression meant to be
    # written to the page would silently show nothing there
    import ast

    from dashboard.serve import streamlit_command

    cmd = streamlit_command("runs")
    assert cmd[cmd.index("--runner.magicEnabled") + 1] == "false"
    # nor a full garbage collection after every run (a live refresh's chart waited for it)
    assert cmd[cmd.index("--runner.postScriptGC") + 1] == "false"
    scripts = sorted((REPO / "dashboard").rglob("*.py")) + [REPO / "app.py"]
    bare = []
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Expr) and not isinstance(
                node.value, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom)
            ):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    continue  # docstrings
                bare.append(f"{path.name}:{node.lineno}")
    assert len(scripts) > 10 and bare == []


def test_streamlit_run_from_the_checkout_uses_the_served_runner_options():
    # `streamlit run app.py` from the checkout's root reads .streamlit/config.toml: the
    # same runner options as `infoscope dashboard` passes on its command line
    import tomllib

    from dashboard.serve import streamlit_command

    cmd = streamlit_command("runs")
    served = {
        a.split(".", 1)[1]: cmd[i + 1] for i, a in enumerate(cmd) if a.startswith("--runner.")
    }
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["runner"]
    assert served == {"magicEnabled": "false", "postScriptGC": "false"}
    assert {k: str(v).lower() for k, v in config.items()} == served
