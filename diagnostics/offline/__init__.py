"""Offline analysis: what training already saved (activations, logits) turned into a run.

``snapshots`` reads ``.npz`` snapshots and computes the probes' metrics on them with the
estimators, writes a run and replays the collapse detectors over it (``infoscope analyze``).
"""

from __future__ import annotations

from diagnostics.offline.snapshots import LAYER_METRICS, analyze_snapshots, load_snapshot

__all__ = ["LAYER_METRICS", "analyze_snapshots", "load_snapshot"]
