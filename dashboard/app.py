"""The infoscope dashboard's Streamlit entry point: page set-up, the shared sidebar and the
navigation between the pages in ``dashboard/app_pages/``.

Each session runs this file: ``infoscope dashboard [ROOT]`` serves it through
:mod:`dashboard.asgi` (``streamlit run .../dashboard/asgi.py -- --root ROOT``); ``streamlit
run`` on this file or on the checkout's top-level ``app.py`` (which calls :func:`main`)
works too. Reads run
logs below its root folder only (``--root``, else ``$INFOSCOPE_ROOT``, else ``./runs`` or
the sample runs) and never imports torch. Every view setting is bound to the URL, so a
view can be shared by copying the address.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import data, stories, view
from dashboard.app_pages import PAGES

#: The page scripts. st.Page gets absolute paths, so they resolve whichever file
#: Streamlit was started on (this one or the checkout's ``app.py``).
PAGES_DIR = Path(__file__).resolve().parent / "app_pages"


def pages() -> list:
    """The dashboard's pages as st.Page objects (inside a script run only)."""
    return [
        st.Page(PAGES_DIR / script, title=title, icon=icon, url_path=url, default=i == 0)
        for i, (script, title, icon, url) in enumerate(PAGES)
    ]


def sidebar(page: str) -> None:
    """Run selection and the display settings every page reads (:func:`view.settings`).

    Until the reader picks runs (or arrives on a URL naming some), each ``page`` (its
    URL path; ``runs`` for the first) opens on its own default runs
    (:func:`stories.select_defaults`)."""
    base = data.root()
    rels = data.run_list(str(base)) if base.is_dir() else []
    with st.sidebar:
        st.caption(f"Runs folder: `{base}`")
        if rels:
            stories.select_defaults(base, rels, page)
            st.multiselect(
                "Runs",
                rels,
                key="run",
                on_change=stories.mark_chosen,
                placeholder="Pick runs",
                help="Runs below the runs folder. Several runs are shown side by side.",
                **view.URL,
            )
        else:
            st.session_state["run"] = []
        # Display settings in a popover: the browser draws its widgets only when it is
        # opened (a closed popover costs the page a button, not eight widgets), while the
        # widgets still run here every time, so their values stay bound to the URL.
        with st.popover("Display settings", icon=":material/tune:", width="stretch"):
            st.segmented_control(
                "Units",
                ["bits", "nats"],
                default="bits",
                required=True,
                key="unit",
                help="Information quantities are logged in nats; bits divide by ln 2.",
                **view.URL,
            )
            st.slider(
                "Smoothing",
                0.0,
                0.99,
                0.0,
                0.01,
                key="smooth",
                help="Exponential moving average (TensorBoard's, debiased); the raw curve stays "
                "faint underneath.",
                **view.URL,
            )
            c1, c2 = st.columns(2)
            c1.toggle("log x", False, key="logx", **view.URL)
            c2.toggle("log y", False, key="logy", **view.URL)
            st.select_slider(
                "Points per line",
                options=[250, 500, 1000, 2000, 5000],
                value=1000,
                key="pts",
                help="Long series are downsampled for drawing, keeping each bucket's min and "
                "max so spikes stay visible. CSV downloads hold every point.",
                **view.URL,
            )
            c3, c4 = st.columns([3, 2])
            c3.toggle("Live refresh", True, key="live", help="Re-read running runs.", **view.URL)
            c4.selectbox(
                "every (s)",
                [1, 2, 5, 10, 30],
                index=1,
                key="every",
                label_visibility="collapsed",
                **view.URL,
            )
        st.caption(settings_summary(view.settings(), st.session_state))


def settings_summary(s: dict, state) -> str:
    """One line saying what the display settings are (shown under the closed popover)."""
    parts = [s["unit"]]
    if s["smoothing"] > 0:
        parts.append(f"smoothing {s['smoothing']:g}")
    axes = [a for a, on in (("x", s["log_x"]), ("y", s["log_y"])) if on]
    if axes:
        parts.append("log " + " and ".join(axes))
    parts.append(f"{s['max_points']} points per line")
    parts.append(f"live every {state.get('every', 2)} s" if state.get("live", True) else "live off")
    return " · ".join(parts)


def main() -> None:
    """One run of the app script: set up the page, draw the sidebar, run the chosen page."""
    st.set_page_config(page_title="infoscope", page_icon=":material/insights:", layout="wide")
    page = st.navigation(pages())
    sidebar(page.url_path or "runs")
    page.run()


if __name__ == "__main__":  # Streamlit runs this file as __main__
    main()
