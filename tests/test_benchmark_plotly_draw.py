"""benchmarks/plotly_draw.py: the figures are the dashboard's, as Streamlit sends them; the
cheap form holds the same values without a template; a real Chromium draws each form."""

from __future__ import annotations

import base64
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
        assert spec["layout"]["template"], name  # Streamlit's theme travels as a template
    ip = figs["information-plane figure"]
    assert "lines+markers" in {t.get("mode") for t in ip["data"]}


def test_cheap_form_keeps_the_values_without_template_or_base64(figs):
    spec = figs["information-plane figure"]
    assert has_bdata(spec)  # numpy arrays travel base64-encoded
    cheap = P.cheap_form(spec)
    assert cheap["layout"]["template"] is None and cheap["layout"]["datarevision"] == 1
    assert not has_bdata(cheap)
    np.testing.assert_array_equal(cheap["data"][0]["x"], decode(spec["data"][0]["x"]))
    assert spec["layout"]["template"]  # the original is left as it was
    shaped = {"dtype": "i2", "bdata": base64.b64encode(np.arange(6, dtype="<i2")).decode()}
    assert P.plain_arrays({**shaped, "shape": "2, 3"}) == [[0, 1, 2], [3, 4, 5]]


def test_report_puts_the_anchor_at_one():
    times = {
        P.ANCHOR: {"first": [60.0], "mount": [20.0], "warm": [10.0], "cheap_mount": [4.0]},
        "fig": {
            "first": [100.0, 140.0],
            "mount": [40.0, 40.0],
            "warm": [30.0, 30.0],
            "cheap_mount": [5.0, 5.0],
        },
    }
    head, anchor, fig = P.report(times)
    assert "cheap mount" in head and "x anchor" in head
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
        assert set(kinds) == {"first", "mount", "warm", "cheap_mount"}, name
        assert all(len(v) == 1 and v[0] > 0 for v in kinds.values()), name
