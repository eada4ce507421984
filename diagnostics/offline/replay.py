"""The collapse detectors replayed over a run written offline, their alerts written into it.

Every offline path (``infoscope analyze``, ``import-tb``, ``import-csv``) ends with
:func:`replay_detectors`, so an imported or re-analysed run gets the same alerts a live run
would have had and the dashboard's Collapse page works on it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["replay_detectors"]


def replay_detectors(writer: Any) -> list[Any]:
    """Flush ``writer`` (a :class:`~diagnostics.runlog.RunWriter`), run the collapse detectors
    over the scalars its run holds, write their alerts through it and return them
    (:class:`~diagnostics.collapse.Alert` records)."""
    from diagnostics.collapse import Alert, detect_collapse
    from diagnostics.lm_collapse import detect_lm_collapse
    from diagnostics.runlog import open_run

    writer.flush()
    with open_run(writer.run_dir) as reader:
        scalars = reader.scalars()
    alerts = list(detect_collapse(scalars))
    alerts += [Alert(**a) for a in detect_lm_collapse(scalars)]
    for alert in alerts:
        alert.write_to(writer)
    return alerts
