"""benchmarks/dashboard_elements.py: every case is an app that runs and draws what it
names (its figure from the dashboard's own builders), on a small benchmark run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import dashboard_elements as E  # noqa: E402


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("elements")
    E.BD.write_run(root / "big", layers=6, steps=60)
    return root


@pytest.mark.parametrize("name", list(E.CASES))
def test_every_case_runs_and_draws_its_element(run_root, monkeypatch, name):
    monkeypatch.setenv("INFOSCOPE_ROOT", str(run_root))
    at = AppTest.from_string(E.case_script(name, run_root), default_timeout=60)
    at.query_params["run"] = "big"
    at.query_params["live"] = "false"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = at.get("plotly_chart")
    assert len(charts) == (2 if name == "+ a second chart" else 1)
    if name in ("anchor", "frame") or name.startswith("+"):
        return  # the anchor's line
    spec = json.loads(charts[0].proto.spec)
    assert spec["data"], name  # the dashboard's figure, with its traces
    modes = {t.get("mode") for t in spec["data"]}
    if name == "information-plane figure":
        assert "lines+markers" in modes
    if name == "information-plane figure, lines only":
        assert "lines+markers" not in modes


def test_cases_add_the_element_they_name(run_root, monkeypatch):
    monkeypatch.setenv("INFOSCOPE_ROOT", str(run_root))

    def run(name):
        at = AppTest.from_string(E.case_script(name, run_root), default_timeout=60)
        at.query_params["run"] = "big"
        at.run()
        return at

    def keys(at):
        return [w.key for w in at.selectbox]

    assert "m" in keys(run("+ selectbox")) and "m" not in keys(run("frame"))
    assert len(run("+ st.table (1 row)").table) == 1
    assert any(m.value.startswith("| run |") for m in run("+ Markdown table (1 row)").markdown)
    views = [g for g in run("+ segmented control").get("button_group") if g.key != "unit"]
    assert len(views) == 1
