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


#: set once the session's first run has read the runs and settings its URL names
URL_READ = "_url_read"


def sidebar(page: str) -> None:
    """Run selection and the display settings every page reads (:func:`view.settings`).

    Until the reader picks runs (or arrives on a URL naming some), each ``page`` (its
    URL path; ``runs`` for the first) opens on its own default runs
    (:func:`stories.select_defaults`).

    The run picker and the settings sit in popovers: the browser draws their widgets only
    when one is opened (the run picker alone cost every page about 0.13 s of browser time).
    The URL names them all the same: :func:`settings_from_url` and :func:`settings_to_url`
    keep them in it, here rather than through Streamlit's widget binding, since at a page
    change Streamlit's frontend drops the parameters of widgets it has not drawn."""
    base = data.root()
    rels = data.run_list(str(base)) if base.is_dir() else []
    settings_from_url()
    with st.sidebar:
        st.caption(f"Runs folder: `{base}`")
        if rels:
            stories.select_defaults(base, rels, page)
            with st.popover(runs_label(st.session_state.get("run")), width="stretch"):
                st.multiselect(
                    "Runs",
                    rels,
                    key="run",
                    on_change=stories.mark_chosen,
                    placeholder="Pick runs",
                    help="Runs below the runs folder. Several runs are shown side by side.",
                    persist_state="session",
                )
        else:
            st.session_state["run"] = []
        with st.popover("Display settings", icon=":material/tune:", width="stretch"):
            st.segmented_control(
                "Units",
                ["bits", "nats"],
                required=True,
                key="unit",
                help="Information quantities are logged in nats; bits divide by ln 2.",
                persist_state="session",
            )
            st.slider(
                "Smoothing",
                0.0,
                view.SMOOTHING_MAX,
                step=0.01,
                key="smooth",
                help="Exponential moving average (TensorBoard's, debiased); the raw curve stays "
                "faint underneath.",
                persist_state="session",
            )
            c1, c2 = st.columns(2)
            c1.toggle("log x", key="logx", persist_state="session")
            c2.toggle("log y", key="logy", persist_state="session")
            st.select_slider(
                "Points per line",
                options=list(view.SETTINGS["pts"][1]),
                key="pts",
                help="Long series are downsampled for drawing, keeping each bucket's min and "
                "max so spikes stay visible. CSV downloads hold every point.",
                persist_state="session",
            )
            c3, c4 = st.columns([3, 2])
            c3.toggle(
                "Live refresh", key="live", help="Re-read running runs.", persist_state="session"
            )
            c4.selectbox(
                "every (s)",
                list(view.SETTINGS["every"][1]),
                key="every",
                label_visibility="collapsed",
                persist_state="session",
            )
        st.caption(settings_summary(view.settings()))
    settings_to_url()


def _from_url(key: str, text: str):
    """A setting's value from its URL text, or None if it is not one it may take."""
    default, allowed = view.SETTINGS[key]
    try:
        if isinstance(default, bool):
            value = {"true": True, "false": False}[text.lower()]
        elif isinstance(default, (int, float)):
            value = type(default)(float(text))
        else:
            value = text
    except (KeyError, ValueError):
        return None
    if allowed is None:
        return round(value, 2) if 0.0 <= value <= view.SMOOTHING_MAX else None
    return value if value in allowed else None


def settings_from_url() -> None:
    """At the session's first run, the settings the URL names (invalid ones ignored) into
    the session state, the others at their defaults (set before the widgets are made,
    which then take no default of their own)."""
    state = st.session_state
    if URL_READ in state:
        return
    state[URL_READ] = True
    for key, (default, _) in view.SETTINGS.items():
        text = st.query_params.get(key)
        value = None if text is None else _from_url(key, text)
        state[key] = default if value is None else value


def settings_to_url() -> None:
    """The URL names the runs shown and every setting that differs from its default."""
    state, params = st.session_state, st.query_params
    runs = list(state.get("run") or [])
    if runs:
        if params.get_all("run") != runs:
            params["run"] = runs
    elif "run" in params:
        del params["run"]
    for key, (default, _) in view.SETTINGS.items():
        value = view.setting(key)
        if value == default:
            if key in params:
                del params[key]
        elif params.get(key) != _url_text(value):
            params[key] = _url_text(value)


def _url_text(value) -> str:
    """A setting's value as the URL writes it (what :func:`_from_url` reads)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def runs_label(runs: list[str] | None, width: int = 60) -> str:
    """The run picker's label: the runs shown, shortened to about ``width`` characters."""
    runs = list(runs or [])
    if not runs:
        return "Runs: none picked"
    text = ", ".join(runs)
    if len(text) > width:
        text = text[: width - 1].rsplit(",", 1)[0] + f" … ({len(runs)} runs)"
    return f"Runs: {text}"


def settings_summary(s: dict) -> str:
    """One line saying what the display settings are (shown under the closed popover)."""
    parts = [s["unit"]]
    if s["smoothing"] > 0:
        parts.append(f"smoothing {s['smoothing']:g}")
    axes = [a for a, on in (("x", s["log_x"]), ("y", s["log_y"])) if on]
    if axes:
        parts.append("log " + " and ".join(axes))
    parts.append(f"{s['max_points']} points per line")
    parts.append(f"live every {view.setting('every')} s" if view.setting("live") else "live off")
    return " · ".join(parts)


def main() -> None:
    """One run of the app script: set up the page, draw the sidebar, run the chosen page."""
    st.set_page_config(page_title="infoscope", page_icon=":material/insights:", layout="wide")
    page = st.navigation(pages())
    sidebar(page.url_path or "runs")
    page.run()


if __name__ == "__main__":  # Streamlit runs this file as __main__
    main()
