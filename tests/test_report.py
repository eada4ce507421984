"""`infoscope report`: the HTML report of a real run (recorded with probes.Monitor on a small
MLP whose loss diverges), opened in headless Chromium with the network blocked; its
contents, downsampling and escaping; the command's errors; the dashboard's download button
giving the same bytes as the command (AppTest, and a real click in Chromium)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plotly.offline import get_plotlyjs
from streamlit.testing.v1 import AppTest

from dashboard import report as R
from dashboard.serve import CHROMIUM, CHROMIUM_ARGS
from diagnostics.runlog import RunWriter, open_run
from tests.plotly_spec import decode

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RUNS = sorted(
    p.parent
    for d in ("sample_runs", "dashboard/sample_runs")
    for p in (REPO / d).glob("*/run.sqlite")
)


def infoscope(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=300,
    )


def without_time(data: bytes) -> bytes:
    """The report with its one timestamp (when it was generated) blanked."""
    out, n = re.subn(rb"<time>[^<]*</time>", b"<time></time>", data)
    assert n == 1, f"expected one timestamp, found {n}"
    return out


def figures(text: str) -> dict[str, tuple[list, dict]]:
    """Every figure of a report: div id -> (traces, layout), decoded (plotly's base64
    arrays as numpy)."""
    dec = json.JSONDecoder()
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"(fig-\d+)",\s*', text):
        data, end = dec.raw_decode(text, m.end())
        rest = re.match(r",\s*", text[end:])
        layout, _ = dec.raw_decode(text, end + rest.end())
        out[m.group(1)] = (decode(data), decode(layout))
    return out


def record_run(path: Path) -> None:
    """A small MLP trained with probes.Monitor; the learning rate jumps at step 30, so the
    loss diverges and the detector raises a warning and a critical alert."""
    import torch
    from torch import nn

    from probes import Monitor

    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 3)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with Monitor(
        model,
        path,
        probe_inputs=x,
        probe_labels=y,
        layers=["1", "3"],  # the tanh outputs
        every=2,
        budget=None,
        name="tiny-mlp",
        config={"lr": 0.5, "lr_after_step_30": 40.0},
    ) as mon:
        for step in range(50):
            if step == 30:
                for g in opt.param_groups:
                    g["lr"] = 40.0
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(step, loss=loss)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """(run folder, report written by the command) for the recorded MLP run."""
    root = tmp_path_factory.mktemp("report")
    run = root / "runs" / "tiny-mlp"
    record_run(run)
    out = root / "tiny-mlp.html"
    res = infoscope("report", str(run), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"wrote {out} (") and "MB)" in res.stdout
    return run, out


# ------------------------------------------------------------------------ contents
def test_the_recorded_run_has_what_the_report_draws(mlp):
    run, _ = mlp
    with open_run(run) as r:
        alerts = r.alerts()
        metrics = set(r.metrics())
    assert {"warning", "critical"} <= set(alerts["severity"])
    # the loss diverges, and the tanh layers saturate as it does
    assert {"loss_divergence", "saturation"} <= set(alerts["indicator"])
    assert {"info_plane/binning/I_XT", "repr/effective_rank", "train/loss"} <= metrics


def test_report_holds_metadata_sections_and_one_plotly(mlp):
    run, out = mlp
    text = out.read_text(encoding="utf-8")
    plotly_js = get_plotlyjs()
    assert text.count(plotly_js) == 1  # inlined once, not once per figure
    assert len(text.encode()) < len(plotly_js.encode()) + 600_000
    ours = text.replace(plotly_js, "")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours)  # nothing to fetch
    figs = figures(text)
    assert len(figs) == text.count("Plotly.newPlot(") >= 10
    with open_run(run) as r:
        meta, n_alerts = r.meta, len(r.alerts())
    for anchor, title in [
        ("overview", "Run"),
        ("alerts", f"Alerts ({n_alerts})"),
        ("training", "Training"),
        ("information-plane", "Information plane"),
        ("representations", "Representations"),
        ("other", "Other series"),  # probe/seconds
    ]:
        assert f'<section id="{anchor}"><h2>{title}</h2>' in text
    assert 'id="language-model"' not in text and 'id="attention"' not in text  # not logged
    assert "<h1>tiny-mlp</h1>" in text
    assert meta["created"] in text and "lr_after_step_30" in text
    assert "Sequential(" in text and "Linear(in_features=8, out_features=32" in text  # model
    assert "Detector context" in text and "label_entropy" in text
    assert "training loss rose to" in text  # the alert table's messages


def test_evidence_is_drawn_with_threshold_and_step(mlp):
    """One chart per (indicator, layer, severity), the same figure the Collapse page draws:
    the evidence's points with their logged values, the whole logged series under them, the
    threshold and the alert's step."""
    from dashboard.figures import convert_units

    run, out = mlp
    with open_run(run) as r:
        alerts = r.alerts()
        scalars = r.scalars()
    firsts = alerts.drop_duplicates(subset=["indicator", "layer", "severity"])
    charts = {}
    for traces, layout in figures(out.read_text(encoding="utf-8")).values():
        drawn = [t for t in traces if str(t.get("name", "")).endswith(" (evidence)")]
        if drawn:
            (mark,) = [s for s in layout["shapes"] if s.get("yref") == "y domain"]
            charts[(drawn[0]["name"], mark["x0"], mark["line"]["color"])] = (traces, layout)
    assert len(charts) == len(firsts) >= 4
    for _, alert in firsts.iterrows():
        ev = alert["evidence"]
        layer = alert["layer"] if isinstance(alert["layer"], str) else None
        label = ev["metric"] + (f" · {layer}" if layer else "")
        color = {"info": "#1f77b4", "warning": "#ff7f0e", "critical": "#d62728"}[alert["severity"]]
        traces, layout = charts[(f"{label} (evidence)", alert["step"], color)]
        drawn = next(t for t in traces if t["name"] == f"{label} (evidence)")
        shown = convert_units(np.asarray(ev["values"], dtype=float), ev["metric"], "bits")
        np.testing.assert_allclose(drawn["y"], shown)  # the logged values (in bits if info)
        assert list(drawn["x"]) == ev["steps"]
        (hline,) = [s for s in layout["shapes"] if s.get("xref") == "x domain"]
        threshold = convert_units(np.array([ev["threshold"]]), ev["metric"], "bits")[0]
        assert hline["y0"] == pytest.approx(threshold)
        assert any(f"fires {ev['direction']}" in a.get("text", "") for a in layout["annotations"])
        whole = next(t for t in traces if t["name"] == f"{label} (whole run)")
        logged = scalars[scalars["metric"] == ev["metric"]]
        logged = logged[logged["layer"] == layer] if layer else logged[logged["layer"].isna()]
        assert len(whole["x"]) == len(logged) > len(ev["steps"]) - 1


def test_same_run_same_report(mlp):
    run, _ = mlp
    import datetime as dt

    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    a, b = R.build_report(run, generated=at), R.build_report(run, generated=at)
    assert a == b and "<time>2026-01-02T03:04:05+00:00</time>" in a


def test_units_bits_by_default_nats_on_request(mlp):
    run, _ = mlp
    with open_run(run) as r:
        dse = r.scalars(metrics=["repr/dse"]).sort_values("id")
    first = dse.iloc[0]

    def shown(unit):
        for traces, layout in figures(R.build_report(run, unit=unit)).values():
            if (layout.get("title") or {}).get("text") == "repr/dse":
                t = next(t for t in traces if t["name"] == first["layer"])
                return float(t["y"][0]), layout["yaxis"]["title"]["text"]
        raise AssertionError("no repr/dse chart")

    bits, title_bits = shown("bits")
    nats, title_nats = shown("nats")
    assert nats == pytest.approx(first["value"]) and bits == pytest.approx(
        first["value"] / np.log(2)
    )
    assert "(bits)" in title_bits and "(nats)" in title_nats


def test_long_run_is_downsampled_and_keeps_its_spike(tmp_path):
    run = tmp_path / "long"
    n = 200_000
    steps = np.arange(n)
    loss = 2.0 * np.exp(-steps / 30_000) + 0.01 * np.sin(steps / 7.0)
    loss[123_457] = 50.0  # one spike
    with RunWriter(run, meta={"name": "long"}, batch_rows=50_000) as w:
        for s, v in zip(steps.tolist(), loss.tolist()):
            w.log(s, {"train/loss": v})
        for s in range(0, n, 40):
            w.log(s, {"repr/effective_rank": 3.0 + s / n}, layer="enc")
    text = R.build_report(run)
    size = len(text.encode())
    assert size < len(get_plotlyjs().encode()) + 250_000, size
    (traces, _), *_ = [
        f for f in figures(text).values() if (f[1].get("title") or {}).get("text") == "train/loss"
    ]
    (trace,) = traces
    assert len(trace["x"]) <= R.MAX_POINTS
    assert trace["customdata"].max() == 50.0 and 123_457 in trace["x"]
    assert trace["x"][0] == 0 and trace["x"][-1] == n - 1


def test_language_model_run_gets_its_sections(runs_root):
    text = R.build_report(runs_root / "lm" / "grpo")
    assert 'id="language-model"' in text and 'id="attention"' in text and 'id="alerts"' in text
    assert 'id="information-plane"' not in text and 'id="representations"' not in text
    figs = figures(text)
    bands = [t for f in figs.values() for t in f[0] if str(t.get("name", "")).endswith(" mean")]
    assert bands, "no token-entropy band chart"
    assert "attn/entropy/h0" in text.split("<footer>")[1]  # per-head series: listed, not drawn


def test_names_from_the_run_are_escaped(tmp_path):
    evil = "</script><script>alert(1)</script>"
    with RunWriter(tmp_path / "evil", meta={"name": evil, "config": {evil: evil}}) as w:
        for s in range(5):
            w.log(s, {"repr/dse": 1.0 + s}, layer=evil)
        w.alert(3, "entropy_collapse", severity="warning", layer=evil, message=evil)
    text = R.build_report(tmp_path / "evil")
    assert evil not in text
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_series_outside_the_known_families_and_an_empty_run(tmp_path):
    """An imported log keeps its own names (``loss``, ``lr``): drawn under Other series.
    A run with no rows gets its metadata and no plotly.js (nothing to draw)."""
    with RunWriter(tmp_path / "imported", meta={"name": "from-csv"}) as w:
        for s in range(30):
            w.log(s, {"loss": 1.0 / (s + 1), "lr": 1e-3})
    text = R.build_report(tmp_path / "imported")
    assert '<section id="other"><h2>Other series</h2>' in text
    titles = {(f[1].get("title") or {}).get("text") for f in figures(text).values()}
    assert {"loss", "lr"} <= titles
    RunWriter(tmp_path / "empty", meta={"name": "nothing yet", "config": {"lr": 0.1}}).close()
    text = R.build_report(tmp_path / "empty")
    assert "<h1>nothing yet</h1>" in text and "Configuration" in text
    assert "Plotly" not in text and len(text.encode()) < 50_000


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE_RUNS, reason="no sample runs in this checkout")
@pytest.mark.parametrize("run", SAMPLE_RUNS, ids=lambda p: p.name)
def test_every_sample_run_reports(run):
    text = R.build_report(run)
    figs = figures(text)
    assert figs and all(traces for traces, _ in figs.values())
    assert len(text.encode()) < len(get_plotlyjs().encode()) + 600_000


# ------------------------------------------------------------------------ the command
def test_command_is_registered_by_the_dashboard_package():
    import diagnostics.cli as cli

    assert "report" not in cli.BUILTIN
    import dashboard.commands  # noqa: F401

    assert "report" in cli.base.COMMANDS
    res = infoscope("--help")
    assert res.returncode == 0 and "report" in res.stdout


def test_default_out_is_the_run_folder_name(mlp, tmp_path):
    run, out = mlp
    res = infoscope("report", str(run), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    written = tmp_path / "tiny-mlp.html"
    assert res.stdout.strip().startswith("wrote tiny-mlp.html (")
    assert without_time(written.read_bytes()) == without_time(out.read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-mlp.html"]


def _one_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infoscope: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_folder_that_is_not_a_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = infoscope("report", str(empty), "--out", str(tmp_path / "r.html"))
    _one_error(res, "RUN:", str(empty), "run.sqlite")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.sqlite").write_bytes(b"not a database at all" * 100)
    res = infoscope("report", str(tmp_path / "broken"), "--out", str(tmp_path / "r.html"))
    _one_error(res, "RUN:", "broken", "not an infoscope run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "empty"]  # nothing written


def test_a_folder_of_runs_names_them(mlp, tmp_path):
    run, _ = mlp
    res = infoscope("report", str(run.parent), "--out", str(tmp_path / "r.html"))
    _one_error(res, "RUN:", str(run.parent), "folder of 1 run(s)", "tiny-mlp")


def test_existing_out_needs_overwrite(mlp, tmp_path):
    run, _ = mlp
    out = tmp_path / "report.html"
    out.write_text("keep me")
    res = infoscope("report", str(run), "--out", str(out))
    _one_error(res, "--out:", str(out), "--overwrite")
    assert out.read_text() == "keep me"
    res = infoscope("report", str(run), "--out", str(out), "--overwrite")
    assert res.returncode == 0, res.stderr
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    res = infoscope("report", str(run), "--out", str(tmp_path))
    _one_error(res, "--out:", str(tmp_path), "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary files


def test_a_failed_write_leaves_nothing(mlp, tmp_path, monkeypatch):
    run, _ = mlp
    out = tmp_path / "sub" / "report.html"

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(R.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        R.write_report(run, out)
    assert list((tmp_path / "sub").iterdir()) == []  # the temporary file is gone


# ------------------------------------------------------------------------ dashboard button
def _runs_page(root: Path, run: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("INFOSCOPE_ROOT", str(root))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.query_params["run"] = [run]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_runs_page_button_gives_the_commands_bytes(mlp, monkeypatch):
    """The button's data is a callable that Streamlit runs on click (deferred download):
    capture what the Runs page registers and run it as the server would."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    run, out = mlp
    registered = []
    real = MediaFileManager.add_deferred

    def spy(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        registered.append((file_name, mimetype, data_callable))
        return real(self, data_callable, mimetype, coordinates, file_name=file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    at = _runs_page(run.parent, "tiny-mlp", monkeypatch)
    buttons = [b for b in at.get("download_button") if b.proto.label == "Download report"]
    assert len(buttons) == 1 and buttons[0].proto.deferred_file_id  # built on click only
    (callable_,) = [c for name, _, c in registered if name == "tiny-mlp.html"]
    assert [m for name, m, _ in registered if name == "tiny-mlp.html"] == ["text/html"]
    data = callable_()
    assert without_time(data) == without_time(out.read_bytes())


# ------------------------------------------------------------------------ in Chromium
@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("INFOSCOPE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and INFOSCOPE_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
  id: el.id,
  traces: (el._fullData || []).length,
  drawn: el.querySelectorAll('.scatterlayer .trace').length,
  paths: [...el.querySelectorAll('.scatterlayer .trace path.js-line, .scatterlayer .point')]
    .filter(p => (p.getAttribute('d') || '').length > 2).length,
}))"""


@pytest.mark.browser
@pytest.mark.slow
def test_report_renders_in_chromium_with_the_network_blocked(mlp, chromium):
    _, out = mlp
    n_figures = len(figures(out.read_text(encoding="utf-8")))
    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    blocked, errors = [], []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(out.as_uri())
        page.wait_for_function(
            f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figures}",
            timeout=30_000,
        )
        drawn = page.evaluate(DRAWN)
        assert len(drawn) == n_figures
        for fig in drawn:
            assert fig["traces"] > 0 and fig["drawn"] > 0 and fig["paths"] > 0, fig
        assert page.evaluate("() => typeof Plotly") == "object"
        page.get_by_role("link", name=re.compile(r"^Alerts \(\d+\)$")).click()  # contents
        assert page.evaluate("() => location.hash") == "#alerts"
    finally:
        page.close()
    assert blocked == [] and errors == []


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_button_downloads_the_report_in_chromium(mlp, chromium):
    from dashboard.serve import serve

    run, out = mlp
    with serve(run.parent) as url:
        page = chromium.new_page(accept_downloads=True, viewport={"width": 1400, "height": 1600})
        try:
            page.goto(f"{url}/?run=tiny-mlp")
            button = page.get_by_role("button", name="Download report")
            button.wait_for(timeout=60_000)
            with page.expect_download(timeout=60_000) as info:
                button.click()
            download = info.value
            assert download.suggested_filename == "tiny-mlp.html"
            data = Path(download.path()).read_bytes()
        finally:
            page.close()
    assert without_time(data) == without_time(out.read_bytes())
