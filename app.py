"""The infoscope dashboard from a source checkout: ``streamlit run app.py -- --root RUNS``.

The app is the :mod:`dashboard` package (``dashboard/app.py``, which ``infoscope
dashboard RUNS`` runs directly); this file only calls it.
"""

from dashboard.app import main

main()
