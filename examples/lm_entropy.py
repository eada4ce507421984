"""Thin wrapper: ``python examples/lm_entropy.py [OPTIONS]`` runs
:mod:`dashboard.samples.lm_entropy`, which holds the recipe, its options and what the runs
show.

The recording code lives in the package, so that an installed wheel has it too
(``python -m dashboard.samples.lm_entropy``, ``infoscope demo --regenerate DIR``).
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]  # a source checkout: import its packages
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from dashboard.samples.lm_entropy import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
