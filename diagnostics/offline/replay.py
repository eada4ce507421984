"""The detectors replayed over a run written offline, their alerts written into it.

Every offline path (``infoscope analyze``, ``import-tb``, ``import-csv``) ends with
:func:`replay_detectors`, so an imported or re-analysed run gets the same alerts a live run
would have had and the dashboard's Collapse page works on it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["replay_detectors"]


def replay_detectors(writer: Any, context: Any = None) -> list[Any]:
    """Flush ``writer`` (a :class:`~diagnostics.runlog.RunWriter`), run every detector over the
    scalars its run holds, write their alerts through it and return them
    (:class:`~diagnostics.detectors.Alert` records).

    ``context`` (a :class:`~diagnostics.detectors.Context`) is what the detectors should know
    of the run; it is stored in the run's meta (``detector_context``) so that a later replay
    judges alike. Without one, the run's stored context is used, else an empty one."""
    from diagnostics.detectors import Context, detect_collapse
    from diagnostics.runlog import open_run

    writer.flush()
    with open_run(writer.run_dir) as reader:
        scalars = reader.scalars()
        stored = Context.from_meta(reader.meta)
    context = stored if context is None else context
    writer.set_meta(detector_context=context.to_dict())
    alerts = detect_collapse(scalars, context=context)
    for alert in alerts:
        alert.write_to(writer)
    return alerts
