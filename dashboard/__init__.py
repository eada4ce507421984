"""The infoscope dashboard: a Streamlit app that draws run logs (it reads them and never
computes an estimate or imports torch).

``app`` is the Streamlit entry point and ``app_pages/`` its pages; ``data`` reads the run
logs, ``view`` holds what the pages share; ``figures`` builds the plotly figures (usable
without Streamlit); ``serve`` starts the app as a ``streamlit run`` subprocess and
``commands`` adds ``infoscope dashboard`` to the CLI. Importing this package imports
nothing else.
"""
