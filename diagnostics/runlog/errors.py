"""The run log's error type and staleness rule, shared by its writer and reader."""

from __future__ import annotations

#: A run whose status is ``running`` but whose last commit is older than this many
#: seconds is reported as ``stale`` (its writer probably died).
STALE_AFTER_SECONDS = 120.0


class RunLogError(RuntimeError):
    """A run could not be written or read; the message says why and what to do."""
