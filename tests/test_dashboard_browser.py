"""The dashboard in a real browser: the package's app served by :func:`dashboard.serve.serve`
(``streamlit run dashboard/asgi.py``, as ``infoscope dashboard`` runs it) driven by headless
Chromium.

Skipped when Debian's ``/usr/bin/chromium`` is missing, unless ``INFOSCOPE_REQUIRE_BROWSER=1``
(CI), which turns the skip into a failure. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dashboard.serve import CHROMIUM, CHROMIUM_ARGS, serve
from diagnostics.runlog import RunWriter
from tests.synthetic_runs import write_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
PAGES = {
    "": "Runs",
    "information-plane": "Information plane",
    "representations": "Representations",
    "language-model": "Language model",
    "collapse": "Collapse indicators",
    "compare": "Compare runs",
}
RUNS = "run=ib/tanh&run=ib/relu&run=lm/grpo&run=bad"

RENDERED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return charts.every(c => c.querySelector('.js-plotly-plot .main-svg'));
}"""

MAX_X = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  if (!el || !el._fullData) return null;
  let m = -Infinity;
  for (const t of el._fullData) for (const x of (t.x || [])) m = Math.max(m, x);
  return m;
}"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("INFOSCOPE_REQUIRE_BROWSER") == "1":
            pytest.fail(
                f"{CHROMIUM} is missing and INFOSCOPE_REQUIRE_BROWSER=1 (apt install chromium)"
            )
        pytest.skip(f"{CHROMIUM} is missing (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # one context for every page: the app's scripts are fetched once (HTTP cache)
        ctx = b.new_context(viewport={"width": 1400, "height": 2400})
        try:
            yield ctx
        finally:
            ctx.close()
            b.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The synthetic runs plus ``live/run``, an empty run marked running that the live
    test's writer process appends to."""
    root = write_runs(tmp_path_factory.mktemp("browser_runs"))
    RunWriter(root / "live" / "run").close(status="running")
    return root


@pytest.fixture(scope="module")
def server(root, browser):
    """The dashboard on a free port over the synthetic runs."""
    with serve(root) as url:
        yield url


def _wait(page, title):
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=30_000)
    page.wait_for_function(RENDERED, timeout=30_000, polling=200)


def _open(browser, url, title):
    page = browser.new_page()
    page.goto(url)
    _wait(page, title)
    return page


def _assert_no_exception(page, where):
    assert page.locator('[data-testid="stException"]').count() == 0, where
    body = page.inner_text("body")
    assert "Traceback" not in body and "StreamlitAPIException" not in body, where


def test_every_page_in_chromium(server, browser):
    """Open the app once, then walk the sidebar navigation through every page."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = _open(browser, f"{server}/?{RUNS}", "Runs")
    try:
        for path, title in PAGES.items():
            if path:
                page.locator('[data-testid="stSidebarNav"] a').filter(
                    has_text=title.split()[0]
                ).first.click()
                _wait(page, title)
                assert page.url.split("?")[0].endswith(path), page.url
                assert page.locator('[data-testid="stPlotlyChart"] .main-svg').count() >= 1, path
                # drawn in Streamlit's theme (its template, applied in the browser), though
                # sent without plotly.py's default one
                fonts = page.evaluate(
                    "() => [...document.querySelectorAll('.js-plotly-plot')].map(el => "
                    "((el.layout.template || {}).layout || {}).font)"
                )
                assert fonts and all(f and "Source Sans" in f["family"] for f in fonts), fonts
            _assert_no_exception(page, path)
            body = page.inner_text("body")
            assert "bad" in body and "not an infoscope run" in body, path  # per-run message
            assert "ib/tanh" in body, path  # the selection survived the page switch
            page.screenshot(path=str(ARTIFACTS / f"dashboard_{path or 'runs'}.png"))
    finally:
        page.close()


def test_a_page_url_connects_to_the_server_at_the_root(server, browser):
    """Opened on its own URL, a page asks the server at the root only (the frontend's
    first guess below the page's path costs a 404 and a 100 ms wait), shows that page,
    and the navigation from it still writes each page's URL."""
    page = browser.new_page()
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/_stcore/" in r.url else None)
    try:
        page.goto(f"{server}/collapse?run=ib/tanh")
        _wait(page, "Collapse indicators")
        assert asked and all(u.startswith(f"{server}/_stcore/") for u in asked), asked
        _assert_no_exception(page, "collapse")
        page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Compare").first.click()
        _wait(page, "Compare runs")
        assert page.evaluate("location.pathname") == "/compare"
        assert page.evaluate("location.search") == "?run=ib%2Ftanh", page.url
    finally:
        page.close()


def _redrawn(page, url_glob: str, condition: str, what: str) -> None:
    """After a click: the URL says so, the chart shows it, the page is drawn, no exception."""
    page.wait_for_url(url_glob, timeout=15_000)
    page.wait_for_function(condition, timeout=30_000)
    page.wait_for_function(RENDERED, timeout=30_000)
    _assert_no_exception(page, what)


def test_widget_changes_are_written_to_the_url(server, browser):
    page = _open(browser, f"{server}/compare?run=ib/tanh", "Compare runs")
    try:
        # the display settings sit in a popover of the sidebar: open it, then toggle
        page.get_by_text("Display settings", exact=True).click()
        page.get_by_text("log x", exact=True).click()
        _redrawn(
            page,
            "**logx=true**",
            '() => { const el = document.querySelector(\'[data-testid="stPlotlyChart"] '
            ".js-plotly-plot'); return el && el.layout.xaxis.type === 'log'; }",
            "compare after toggle",
        )
    finally:
        page.close()


def test_page_pickers_name_their_choice_and_open_on_demand(server, browser):
    """A page's metric picker is a popover whose button names the choice: the page draws
    no selectbox until it is opened, and a pick there redraws the chart, relabels the
    button and is written to the URL."""
    page = _open(browser, f"{server}/compare?run=ib/tanh&cmp_metric=train/loss", "Compare runs")
    try:
        main = page.locator('[data-testid="stMain"]')
        assert main.locator('[data-testid="stSelectbox"]').count() == 0
        button = main.get_by_role("button", name="Metric: train/loss")
        assert button.count() == 1
        button.click()  # the popover's body is drawn outside the main block
        page.locator('[data-testid="stSelectbox"]').first.click()
        page.get_by_role("option", name="repr/dse", exact=True).click()
        _redrawn(
            page,
            "**cmp_metric=repr%2Fdse**",
            "() => { const el = document.querySelector('.st-key-cmp_chart .js-plotly-plot');"
            " return el && el.layout.title.text.includes('repr/dse'); }",
            "compare after picking a metric",
        )
        page.keyboard.press("Escape")
        main.get_by_role("button", name="Metric: repr/dse").wait_for(timeout=15_000)
    finally:
        page.close()


def test_runs_and_settings_stay_in_the_url_across_pages(server, browser):
    """The run picker and the display settings sit in closed popovers (widgets the browser
    has not drawn), yet a page change keeps them in the address, so a copied link shows
    the same view."""
    page = _open(browser, f"{server}/compare?run=ib/tanh&unit=nats&smooth=0.5", "Compare runs")
    try:
        page.locator('[data-testid="stSidebarNav"] a').filter(
            has_text="Representations"
        ).first.click()
        _wait(page, "Representations")
        page.wait_for_url("**/representations?**unit=nats**", timeout=15_000)
        query = page.evaluate("location.search")
        assert "run=ib%2Ftanh" in query and "smooth=0.5" in query, query
        assert "nats" in page.inner_text('[data-testid="stSidebar"]')  # the summary line
    finally:
        page.close()


def test_language_model_tabs_draw_the_open_section(server, browser):
    """Only the open tab's charts are drawn; another tab draws its own and names itself in
    the URL."""
    page = _open(browser, f"{server}/language-model?run=lm/grpo", "Language model")
    try:
        charts = '[data-testid="stPlotlyChart"]'
        assert page.locator(charts).count() == 1  # the token-entropy bands
        page.get_by_role("tab", name="Covariance").click()
        _redrawn(
            page,
            "**lm_section=Covariance**",
            "() => [...document.querySelectorAll('.js-plotly-plot')].some(el => el._fullData"
            " && el._fullData.some(t => t.name === 'rl/cov/pos_share'))",
            "language model, Covariance tab",
        )
        assert page.locator(charts).count() == 1
    finally:
        page.close()


def test_the_distribution_csv_is_made_when_downloaded(server, browser, root):
    """The token-entropy distribution's CSV (made only when asked for) holds every
    histogram bin at every step, as the run logged them."""
    import io

    import pandas as pd

    from diagnostics.runlog import open_run

    page = _open(
        browser,
        f"{server}/language-model?run=lm/grpo&lm_section=Entropy+distribution",
        "Language model",
    )
    try:
        buttons = page.locator('[data-testid="stDownloadButton"] button')
        assert buttons.count() == 1  # the distribution's CSV
        with page.expect_download(timeout=30_000) as info:
            buttons.first.click()
        got = pd.read_csv(io.BytesIO(Path(info.value.path()).read_bytes()))
    finally:
        page.close()
    with open_run(root / "lm" / "grpo") as reader:
        logged = reader.distributions(metrics="lm/token_entropy")
    assert list(got.columns) == ["entropy", "step", "share"]
    assert sorted(got["step"].unique()) == sorted(logged["step"].unique())
    per_step = got.groupby("step").size()
    assert per_step.nunique() == 1 and per_step.iloc[0] >= 30  # one grid of bins, every step
    # each step's shares sum to one (fractions of the tokens)
    assert got.groupby("step")["share"].sum().to_numpy() == pytest.approx(1.0)


def test_clicking_an_alert_marker_explains_it(server, browser):
    """A click on the compression-onset marker of the Collapse timeline (a Plotly
    selection event) picks that alert: its series, threshold and step are drawn."""
    page = _open(browser, f"{server}/collapse?run=ib/tanh&run=lm/grpo", "Collapse indicators")
    try:
        # the "info" trace (the first) holds one marker: the tanh run's compression onset
        marker = page.locator(".st-key-col_timeline .scatterlayer .trace").first
        box = marker.locator(".points path").first.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_url("**col_alert=ib%2Ftanh*compression_onset**", timeout=30_000)
        shapes = page.wait_for_function(
            """() => {
              const el = document.querySelector('.st-key-col_explain .js-plotly-plot');
              if (!el || !el.layout.title || !el.layout.title.text.includes('compression phase'))
                return null;
              return el.layout.shapes.map(s => [s.xref, s.x0, s.y0]);
            }""",
            timeout=30_000,
        ).json_value()
        assert ["x", 367, 0] in shapes  # the step where it fired
        assert any(xref == "x domain" and y > 0 for xref, _, y in shapes)  # the threshold
        page.wait_for_function(RENDERED, timeout=30_000)
        _assert_no_exception(page, "collapse after the click")
        assert "Rule:" in page.inner_text("body")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard_alert_explained.png"), full_page=True)
    finally:
        page.close()


def test_live_run_gains_points_while_open(server, browser, root):
    """A writer process appends to a running run while the page is open: the page first
    says the run has no metrics yet, fills in once rows arrive, then keeps growing."""
    run_dir = root / "live" / "run"
    go, stop = root / "live" / "go", root / "live" / "stop"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from diagnostics.runlog import RunWriter
                while not Path({str(go)!r}).exists():
                    time.sleep(0.05)
                w = RunWriter({str(run_dir)!r}, flush_seconds=0)
                step = 0
                while not Path({str(stop)!r}).exists() and step < 900:
                    w.log(step, {{"train/loss": 1.0 / (step + 1)}})
                    w.flush()
                    step += 1
                    time.sleep(0.1)
                w.close()
                """
            ),
        ],
        cwd=REPO,
    )
    try:
        page = _open(
            browser, f"{server}/compare?run=live/run&cmp_metric=train/loss&every=1", "Compare runs"
        )
        try:
            assert "no scalar metrics yet" in page.inner_text("body")
            go.touch()
            page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=30_000)
            assert "live: live/run" in page.inner_text("body")
            page.wait_for_function(f"() => ({MAX_X})() >= 0", timeout=20_000)
            first = page.evaluate(MAX_X)
            page.wait_for_function(f"() => ({MAX_X})() >= {first + 5}", timeout=20_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard_live.png"))
            _assert_no_exception(page, "live")
        finally:
            page.close()
    finally:
        go.touch()
        stop.touch()
        writer.wait(timeout=30)
