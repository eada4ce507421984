"""The dashboard's pages: Streamlit scripts that :mod:`dashboard.app` runs through
st.navigation (not imported; a package only so that they ship with it)."""
