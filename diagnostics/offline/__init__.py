"""Offline analysis: what training already saved turned into runs the dashboard reads.

- :mod:`~diagnostics.offline.snapshots`: saved activations and logits (``.npz``, ``.pt``,
  ``.safetensors``, read by :mod:`~diagnostics.offline.dumps`) analysed with the estimators
  (``infoscope analyze``);
- :mod:`~diagnostics.offline.tensorboard`: TensorBoard event files imported
  (``infoscope import-tb``); :mod:`~diagnostics.offline.tables`: CSV / JSONL logs
  (``infoscope import-csv``); both through :mod:`~diagnostics.offline.scalars`, with tag
  names mapped by :mod:`~diagnostics.offline.names`;
- shared: :mod:`~diagnostics.offline.replay` (the collapse detectors over a written run),
  :mod:`~diagnostics.offline.output` (write into a staging folder, rename at the end),
  :mod:`~diagnostics.offline.progress` (progress bars).
"""

from __future__ import annotations

from diagnostics.offline.dumps import Snapshot, load_dumps, read_dump
from diagnostics.offline.names import KNOWN_TAGS, parse_map, resolve_names
from diagnostics.offline.replay import replay_detectors
from diagnostics.offline.scalars import Imported, ScalarLog, ScalarSeries, write_scalar_log
from diagnostics.offline.snapshots import LAYER_METRICS, analyze_snapshots, load_snapshot
from diagnostics.offline.tables import import_table, read_table
from diagnostics.offline.tensorboard import import_tensorboard, read_tensorboard

__all__ = [
    "Imported",
    "KNOWN_TAGS",
    "LAYER_METRICS",
    "ScalarLog",
    "ScalarSeries",
    "Snapshot",
    "analyze_snapshots",
    "import_table",
    "import_tensorboard",
    "load_dumps",
    "load_snapshot",
    "parse_map",
    "read_dump",
    "read_table",
    "read_tensorboard",
    "replay_detectors",
    "resolve_names",
    "write_scalar_log",
]
