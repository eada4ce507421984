"""What every online detector shares: the :class:`Alert` record, the debounce that turns
per-record levels into reports, and the detector interface (``watches`` / ``observe_step``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from diagnostics.detectors.settings import CollapseSettings

_LEVELS = {0: None, 1: "warning", 2: "collapsed"}


@dataclass(frozen=True)
class Alert:
    """One alert: arguments of ``RunWriter.alert`` (``write_to(writer)`` writes it)."""

    step: int
    indicator: str
    severity: str
    message: str
    layer: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def write_to(self, writer: Any) -> None:
        writer.alert(
            self.step,
            self.indicator,
            severity=self.severity,
            message=self.message,
            layer=self.layer,
            evidence=self.evidence,
        )


class _Debounce:
    """Turn per-record raw levels (0 clear, 1 warning or info, 2 collapsed) into reports.

    The held level is the lowest level of the last ``patience`` records; it is reported
    when it exceeds the last reported level. When the last ``patience`` records are all
    clear, the reported level resets to 0 so that a recurrence is reported again.
    """

    __slots__ = ("recent", "reported")

    def __init__(self, patience: int) -> None:
        self.recent: deque[int] = deque(maxlen=patience)
        self.reported = 0

    def update(self, level: int) -> int:
        """Return the level to report now (0: nothing)."""
        self.recent.append(level)
        if len(self.recent) < (self.recent.maxlen or 1):
            return 0
        if max(self.recent) == 0:
            self.reported = 0
            return 0
        held = min(self.recent)
        if held > self.reported:
            self.reported = held
            return held
        return 0


class _Detector:
    indicator = ""

    def __init__(self, settings: CollapseSettings) -> None:
        self.s = settings
        self.state: dict[Any, Any] = {}

    def watches(self, metric: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def observe(self, step: int, metric: str, layer: str | None, value: float) -> list[Alert]:
        raise NotImplementedError  # pragma: no cover - interface

    def observe_step(self, step: int, rows: list[tuple[str, str | None, float]]) -> list[Alert]:
        """All rows of one step that this detector watches."""
        alerts: list[Alert] = []
        for metric, layer, value in rows:
            alerts.extend(self.observe(step, metric, layer, value))
        return alerts


def _finite(v: float) -> bool:
    return v is not None and math.isfinite(v)
