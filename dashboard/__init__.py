"""The infoscope dashboard: a Streamlit app that draws run logs (it reads them and never
computes an estimate or imports torch).

``app`` is the Streamlit entry point and ``app_pages/`` its pages; ``data`` reads the run
logs, ``view`` holds what the pages share, ``stories`` what each page opens on and what
each run shows; ``figures`` builds the plotly figures (usable without Streamlit); ``serve``
starts the app as a ``streamlit run`` subprocess and ``commands`` adds ``infoscope
dashboard`` and ``infoscope demo`` to the CLI. ``sample_runs/`` holds the runs the demo
opens (package data) and ``samples`` the code that records them, the one subpackage that
trains models (torch; the app never imports it). Importing this package imports nothing
else.
"""
