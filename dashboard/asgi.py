"""The dashboard as an ASGI app: what ``infoscope dashboard`` serves
(``streamlit run dashboard/asgi.py -- --root ROOT``).

It is Streamlit's own server running ``dashboard/app.py`` (:data:`SCRIPT`), with one
addition: a page's own URL (``/information-plane``, ...; see ``dashboard.app_pages.PAGES``) is
answered with Streamlit's page and a note of where the server is. Opened on such a URL,
Streamlit's frontend otherwise looks for its server below the page's path first
(``/information-plane/_stcore/health``), gets a 404, waits 100 ms and then tries the root:
every page but the first started 0.1 s late (``benchmarks/dashboard.py``). The note is the
frontend's own setting for an embedding host, ``window.__streamlit.BACKEND_BASE_URL``; the
page the browser shows still follows its URL, and shared links keep working unchanged.

With ``server.baseUrlPath`` set, pages are answered as Streamlit answers them.
``streamlit run dashboard/app.py`` (or the checkout's ``app.py``) runs the same dashboard
without the note.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import streamlit as st
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from streamlit import config

from dashboard.app_pages import PAGES

#: the script each session runs
SCRIPT = Path(__file__).resolve().with_name("app.py")
#: Streamlit's page (the same file its server answers unknown paths with)
INDEX = Path(st.__file__).resolve().parent / "static" / "index.html"
#: run before Streamlit's scripts: its server is at the root of this origin
BACKEND_NOTE = (
    "<script>window.__streamlit = Object.assign("
    '{BACKEND_BASE_URL: window.location.origin + "/"}, window.__streamlit || {});</script>'
)


@cache
def _page_html(note: bool) -> str:
    html = INDEX.read_text(encoding="utf-8")
    if note:
        if "<head>" not in html:  # a Streamlit whose page we do not know: leave it as is
            return html
        html = html.replace("<head>", "<head>" + BACKEND_NOTE, 1)
    return html


async def page(request: Request) -> HTMLResponse:
    """Streamlit's page for a page URL, noting that the server is at the root."""
    note = not (config.get_option("server.baseUrlPath") or "").strip("/")
    return HTMLResponse(_page_html(note), headers={"Cache-Control": "no-cache"})


#: the page URLs answered here (the first page is the root, which needs no note)
ROUTES = [Route(f"/{url}", page, methods=["GET", "HEAD"]) for *_, url in PAGES if url]

app = st.App(SCRIPT, routes=ROUTES)
