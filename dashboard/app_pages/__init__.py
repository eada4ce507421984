"""The dashboard's pages: Streamlit scripts that :mod:`dashboard.app` runs through
st.navigation (not imported; a package only so that they ship with it), and their list."""

#: (script, title, icon, URL path) per page in sidebar order; the first is the default
#: page. URL paths are part of shared links: keep them.
PAGES = (
    ("runs.py", "Runs", ":material/list:", None),
    ("information_plane.py", "Information plane", ":material/scatter_plot:", "information-plane"),
    ("representations.py", "Representations", ":material/stacked_line_chart:", "representations"),
    ("language_model.py", "Language model", ":material/translate:", "language-model"),
    ("collapse.py", "Collapse", ":material/warning:", "collapse"),
    ("compare.py", "Compare", ":material/compare_arrows:", "compare"),
)
