"""infoscope dashboard: ``streamlit run app.py -- --root RUNS`` or ``infoscope dashboard RUNS``.

Reads run logs below its root folder only (``--root``, else ``$INFOSCOPE_ROOT``, else
``sample_runs/``) and never imports torch. Pages live in ``app_pages/``; figures are
built by :mod:`diagnostics.figures`. Every view setting is bound to the URL, so a view
can be shared by copying the address.
"""

from __future__ import annotations

import streamlit as st

from app_pages import common

st.set_page_config(page_title="infoscope", page_icon=":material/insights:", layout="wide")

PAGES = [
    st.Page("app_pages/runs.py", title="Runs", icon=":material/list:", default=True),
    st.Page(
        "app_pages/information_plane.py",
        title="Information plane",
        icon=":material/scatter_plot:",
        url_path="information-plane",
    ),
    st.Page(
        "app_pages/representations.py",
        title="Representations",
        icon=":material/stacked_line_chart:",
        url_path="representations",
    ),
    st.Page(
        "app_pages/language_model.py",
        title="Language model",
        icon=":material/translate:",
        url_path="language-model",
    ),
    st.Page(
        "app_pages/collapse.py",
        title="Collapse",
        icon=":material/warning:",
        url_path="collapse",
    ),
    st.Page(
        "app_pages/compare.py",
        title="Compare",
        icon=":material/compare_arrows:",
        url_path="compare",
    ),
]


def sidebar() -> None:
    base = common.root()
    rels = common.run_list(str(base)) if base.is_dir() else []
    with st.sidebar:
        st.caption(f"Runs folder: `{base}`")
        if rels:
            st.multiselect(
                "Runs",
                rels,
                default=common.default_runs(base, rels),
                key="run",
                placeholder="Pick runs",
                help="Runs below the runs folder. Several runs are shown side by side.",
                **common.URL,
            )
        else:
            st.session_state["run"] = []
        st.segmented_control(
            "Units",
            ["bits", "nats"],
            default="bits",
            required=True,
            key="unit",
            help="Information quantities are logged in nats; bits divide by ln 2.",
            **common.URL,
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
            **common.URL,
        )
        c1, c2 = st.columns(2)
        c1.toggle("log x", False, key="logx", **common.URL)
        c2.toggle("log y", False, key="logy", **common.URL)
        st.select_slider(
            "Points per line",
            options=[250, 500, 1000, 2000, 5000],
            value=1000,
            key="pts",
            help="Long series are downsampled for drawing, keeping each bucket's min and "
            "max so spikes stay visible. CSV downloads hold every point.",
            **common.URL,
        )
        c3, c4 = st.columns([3, 2])
        c3.toggle("Live refresh", True, key="live", help="Re-read running runs.", **common.URL)
        c4.selectbox(
            "every (s)",
            [1, 2, 5, 10, 30],
            index=1,
            key="every",
            label_visibility="collapsed",
            **common.URL,
        )


sidebar()
st.navigation(PAGES).run()
