"""The dashboard's first view (``dashboard.stories``) in Streamlit's AppTest: with no run
named in the URL each page opens on the runs that make its point, a run's meta can say
which pages it showcases and what it shows, a reader's pick (or a linked selection)
stays on every page, and a trajectory with few positions is drawn as points."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from diagnostics.runlog import RunWriter
from tests.plotly_spec import names, specs
from tests.test_dashboard_app import PACKAGE_APP, PAGES, open_page

SAMPLE_RUNS = PACKAGE_APP.with_name("sample_runs")
#: what each page opens on over the synthetic runs (ib/tanh, ib/relu, lm/grpo, broken
#: ones), none of which says what it showcases: the picks by what they logged
FIRST_VIEW = {
    "runs": ["ib/relu", "ib/tanh"],  # the headline: the information-plane pair
    "information-plane": ["ib/relu", "ib/tanh"],
    "representations": ["ib/relu", "ib/tanh"],  # they log DSMI with the labels
    "language-model": ["lm/grpo"],  # the RL run
    "collapse": ["lm/grpo"],  # the only run with a critical alert
    "compare": ["ib/relu", "ib/tanh"],
}


def _page(page: str) -> str:
    return str((PACKAGE_APP.parent / PAGES[page]).relative_to(PACKAGE_APP.parent.parent))


def _switch(at, page: str):
    at.switch_page(_page(page)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_opens_on_the_runs_that_show_its_point(runs_root, monkeypatch, page):
    at = open_page(runs_root, page, monkeypatch)  # no run named in the URL
    assert at.multiselect(key="run").value == FIRST_VIEW[page]
    if page != "runs":
        assert specs(at), f"{page}: no chart"


def test_two_information_planes_are_the_pick_without_reading_them(runs_root, monkeypatch):
    # ib/relu and ib/tanh are the only runs with an information plane: nothing to rank
    from dashboard import stories

    def unread(run, est):
        raise AssertionError(f"{run.rel}: trajectories read to rank two runs")

    monkeypatch.setattr(stories, "_positions", unread)
    at = open_page(runs_root, "information-plane", monkeypatch)
    assert at.multiselect(key="run").value == FIRST_VIEW["information-plane"]


def test_walking_the_pages_follows_each_page_until_the_reader_picks(runs_root, monkeypatch):
    at = open_page(runs_root, "runs", monkeypatch)
    for page in ("language-model", "information-plane", "collapse"):
        assert _switch(at, page).multiselect(key="run").value == FIRST_VIEW[page]
    at.multiselect(key="run").set_value(["ib/tanh", "lm/grpo"]).run()
    for page in ("language-model", "information-plane", "runs"):
        assert _switch(at, page).multiselect(key="run").value == ["ib/tanh", "lm/grpo"]


def test_a_selection_named_in_the_url_stays_on_every_page(runs_root, monkeypatch):
    at = open_page(runs_root, "language-model", monkeypatch, run=["ib/tanh"])
    assert at.multiselect(key="run").value == ["ib/tanh"]
    assert _switch(at, "collapse").multiselect(key="run").value == ["ib/tanh"]


def test_a_url_naming_the_default_selection_is_no_pick(runs_root, monkeypatch):
    """A page's default selection shows in the URL; reloading that URL (or sharing it)
    opens the same view and leaves the other pages on their own defaults."""
    at = open_page(runs_root, "runs", monkeypatch, run=FIRST_VIEW["runs"])
    assert at.multiselect(key="run").value == FIRST_VIEW["runs"]
    assert _switch(at, "language-model").multiselect(key="run").value == ["lm/grpo"]


def test_the_empty_state_button_is_a_pick_that_stays(runs_root, monkeypatch):
    at = open_page(runs_root, "language-model", monkeypatch, run=["ib/tanh"])
    (button,) = [b for b in at.button if "language-model" in b.label]
    button.click().run()
    assert _switch(at, "information-plane").multiselect(key="run").value == ["lm/grpo"]


def _plane(w: RunWriter, steps, xt, ty, layers=("h1", "h2")) -> None:
    for i, step in enumerate(steps):
        for k, layer in enumerate(layers):
            w.log(
                step,
                {"info_plane/binning/I_XT": xt(i) + k, "info_plane/binning/I_TY": ty(i)},
                layer=layer,
            )


@pytest.fixture()
def told_root(tmp_path) -> Path:
    """Runs that say what they show (meta ``story``, ``showcase``) and runs that don't."""
    meta = {"story": "tanh: the layers  fit, then compress.", "showcase": ["information-plane"]}
    with RunWriter(tmp_path / "plane" / "a", meta=meta) as w:
        _plane(w, range(0, 200, 10), lambda i: 2 + math.sin(i / 3), lambda i: i / 40)
    with RunWriter(tmp_path / "plane" / "b") as w:  # moves more, but says nothing
        _plane(w, range(0, 400, 10), lambda i: 1 + i / 10, lambda i: i / 80)
        w.log(0, {"train/loss": 1.0})
    with RunWriter(tmp_path / "plain", meta={"description": "A plain training run."}) as w:
        w.log(0, {"train/loss": 1.0})
    with RunWriter(tmp_path / "few") as w:  # 30 records at two positions per layer
        _plane(w, range(30), lambda i: 4.0 if i < 2 else 6.0, lambda i: 0.5 if i < 2 else 1.0)
    return tmp_path


def test_the_runs_page_says_what_each_run_shows(told_root, monkeypatch):
    at = open_page(told_root, "runs", monkeypatch)
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["plane/a", "shows"] == "tanh: the layers fit, then compress."
    assert table.loc["plane/b", "shows"] == "Information plane, training curves"  # logged
    assert table.loc["plain", "shows"] == "A plain training run."  # meta description
    assert table.loc["few", "shows"] == "Information plane"
    # the first page picks the two runs whose information plane moves the most
    assert at.multiselect(key="run").value == ["plane/a", "plane/b"]
    assert "tanh: the layers fit, then compress." in [m.value for m in at.markdown]


def test_a_run_that_showcases_a_page_opens_it(told_root, monkeypatch):
    at = open_page(told_root, "information-plane", monkeypatch)
    assert at.multiselect(key="run").value == ["plane/a"]  # its meta wins over b's motion


def test_few_positions_are_drawn_as_points_on_the_page(told_root, monkeypatch):
    at = open_page(told_root, "information-plane", monkeypatch, run=["few", "plane/b"])
    (spec,) = specs(at)
    modes = {(t["xaxis"], t["name"]): t["mode"] for t in spec["data"]}
    assert modes == {
        ("x", "h1"): "markers",
        ("x", "h2"): "markers",
        ("x2", "h1"): "lines+markers",
        ("x2", "h2"): "lines+markers",
    }
    assert len(spec["data"][0]["x"]) == 30  # every record still drawn (and hoverable)
    assert any("drawn as points only" in c.value for c in at.caption)


@pytest.mark.skipif(
    not (SAMPLE_RUNS / "information-plane-tanh").is_dir(), reason="no shipped sample runs"
)
def test_the_shipped_sample_runs_open_on_their_story(monkeypatch):
    """The demo's first views: tanh and ReLU side by side, the two RL runs, a run with
    alerts (whether or not the runs' meta names the pages yet)."""
    at = open_page(SAMPLE_RUNS, "information-plane", monkeypatch)
    assert at.multiselect(key="run").value == ["information-plane-relu", "information-plane-tanh"]
    (spec,) = specs(at)
    assert {t["xaxis"] for t in spec["data"]} == {"x", "x2"}  # two panels
    assert _switch(at, "language-model").multiselect(key="run").value == [
        "lm-rl-baseline",
        "lm-rl-clipcov",
    ]
    picked = _switch(at, "collapse").multiselect(key="run").value
    assert len(picked) == 1 and not any("No alerts" in s.value for s in at.success)
    body = names(specs(at)[0])
    assert body and np.all([isinstance(n, str) for n in body])
