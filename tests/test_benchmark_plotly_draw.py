"""benchmarks/plotly_draw.py: the figures are the dashboard's, as its charts send them (no
template; the anchor's with Streamlit's), and a real Chromium draws each kind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import plotly_draw as P  # noqa: E402

from tests.plotly_spec import decode  # noqa: E402


@pytest.fixture(scope="module")
def figs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plotly_draw")
    P.BD.write_run(root / "big", layers=6, steps=60)
    return P.figures(root, P.FIGURE_CASES)


def has_bdata(obj) -> bool:
    if isinstance(obj, dict):
        return "bdata" in obj or any(has_bdata(v) for v in obj.values())
    if isinstance(obj, list):
        return any(has_bdata(v) for v in obj)
    return False


def test_every_figure_case_is_built_as_sent(figs):
    assert list(figs) == [P.ANCHOR, *P.FIGURE_CASES]
    assert "information-plane figure" in figs and "alert timeline" in figs
    for name, spec in figs.items():
        assert spec["data"], name
        # the dashboard's charts go without a template; the anchor, a plain
        # st.plotly_chart, carries Streamlit's
        assert ("template" in spec["layout"]) == (name == P.ANCHOR), name
    ip = figs["information-plane figure"]
    assert "lines+markers" in {t.get("mode") for t in ip["data"]}
    assert has_bdata(ip)  # numpy arrays travel base64-encoded
    steps = decode(ip["data"][0]["customdata"])
    assert len(steps) > 1 and np.all(np.diff(steps) > 0)  # a trajectory's steps, in order


def test_report_puts_the_anchor_at_one():
    times = {
        P.ANCHOR: {"first": [60.0], "mount": [20.0], "warm": [10.0], "same_config": [4.0]},
        "fig": {
            "first": [100.0, 140.0],
            "mount": [40.0, 40.0],
            "warm": [30.0, 30.0],
            "same_config": [5.0, 5.0],
        },
    }
    head, anchor, fig = P.report(times)
    assert "same config" in head and "x anchor" in head
    assert anchor.split()[-1] == "1.00"
    assert fig.split()[-1] == f"{(120 + 40) / 80:.2f}" and fig.split()[1] == "120.0"


def test_chromium_draws_each_form(figs):
    if not Path(P.BD.CHROMIUM).exists():
        if os.environ.get("INFOSCOPE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{P.BD.CHROMIUM} is missing and INFOSCOPE_REQUIRE_BROWSER=1")
        pytest.skip(f"{P.BD.CHROMIUM} is missing (apt install chromium)")
    some = {n: figs[n] for n in (P.ANCHOR, "alert timeline")}
    times = P.measure(some, repeat=1)
    for name, kinds in times.items():
        assert set(kinds) == {"first", "mount", "warm", "same_config"}, name
        assert all(len(v) == 1 and v[0] > 0 for v in kinds.values()), name
