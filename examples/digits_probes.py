"""Thin wrapper: ``python examples/digits_probes.py [OPTIONS]`` runs
:mod:`dashboard.samples.digits`, which holds the recipe, its options and what the runs
show.

The recording code lives in the package, so that an installed wheel has it too
(``python -m dashboard.samples.digits``, ``infoscope demo --regenerate DIR``).
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]  # a source checkout: import its packages
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from dashboard.samples.digits import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
