"""How the sample runs in ``dashboard/sample_runs/`` are recorded: one module per example
(:mod:`~dashboard.samples.digits`, :mod:`~dashboard.samples.information_plane`,
:mod:`~dashboard.samples.lm_entropy`), and :mod:`~dashboard.samples.regenerate`, which
records them all with progress bars (``infoscope demo --regenerate DIR``).

Unlike the rest of :mod:`dashboard`, these modules train models: they import torch and
the probes. The dashboard's app, pages and figures never import them
(``tests/test_architecture.py``); ``infoscope demo`` imports them only to regenerate.
Importing this package itself imports nothing else.
"""
