"""``python -m diagnostics.cli``: the same as the ``infoscope`` command."""

import sys

from diagnostics.cli import main

sys.exit(main())
