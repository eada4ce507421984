"""``CollapseDetector`` runs every online detector over the rows a run records, step by step;
``detect_collapse`` replays a recorded scalar table through it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from diagnostics.detectors.base import Alert, _Detector
from diagnostics.detectors.compression import CompressionOnset
from diagnostics.detectors.memorisation import Memorisation
from diagnostics.detectors.representation import EntropyCollapse, RankCollapse, Saturation
from diagnostics.detectors.settings import CollapseSettings

CollapseAlert = Alert

#: indicator name -> detector class
DETECTORS: dict[str, type[_Detector]] = {
    "rank_collapse": RankCollapse,
    "entropy_collapse": EntropyCollapse,
    "saturation": Saturation,
    "memorisation": Memorisation,
    "compression_onset": CompressionOnset,
}


class CollapseDetector:
    """Run the collapse detectors online.

    Parameters
    ----------
    settings:
        Thresholds (:class:`CollapseSettings`; defaults when omitted).
    indicators:
        Which detectors to run (names of :data:`DETECTORS`); all by default.

    >>> det = CollapseDetector(CollapseSettings(patience=1))
    >>> det.update(0, [("repr/effective_rank", "fc1", 20.0)])
    []
    >>> [a.severity for a in det.update(1, [("repr/effective_rank", "fc1", 1.5)])]
    ['collapsed']
    >>> det.update(2, [("repr/effective_rank", "fc1", 1.4)])  # not repeated
    []
    """

    def __init__(
        self,
        settings: CollapseSettings | None = None,
        *,
        indicators: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else CollapseSettings()
        if not isinstance(self.settings, CollapseSettings):
            raise TypeError(
                f"settings: expected a CollapseSettings, got {type(self.settings).__name__}"
            )
        names = list(DETECTORS) if indicators is None else list(indicators)
        for n in names:
            if n not in DETECTORS:
                raise ValueError(
                    f"indicators: expected names among {', '.join(DETECTORS)}, got {n!r}"
                )
        self.detectors = [DETECTORS[n](self.settings) for n in names]
        self._routes: dict[str, list[_Detector]] = {}

    def _route(self, metric: str) -> list[_Detector]:
        r = self._routes.get(metric)
        if r is None:
            r = self._routes[metric] = [d for d in self.detectors if d.watches(metric)]
        return r

    def update(self, step: int, rows: Iterable[tuple[str, str | None, float]]) -> list[Alert]:
        """Feed the rows recorded at ``step``; return new alerts."""
        per: dict[int, list[tuple[str, str | None, float]]] = {}
        for metric, layer, value in rows:
            for det in self._route(metric):
                per.setdefault(id(det), []).append((metric, layer, float(value)))
        alerts: list[Alert] = []
        for det in self.detectors:
            got = per.get(id(det))
            if got:
                alerts.extend(det.observe_step(int(step), got))
        return alerts

    def feed(self, rows: Iterable[tuple[int, str, str | None, float]]) -> list[Alert]:
        """Feed ``(step, metric, layer, value)`` rows (steps in order); return new alerts."""
        alerts: list[Alert] = []
        group: list[tuple[str, str | None, float]] = []
        current = None
        for step, metric, layer, value in rows:
            if step != current and group:
                alerts.extend(self.update(current, group))
                group = []
            current = step
            group.append((metric, layer, value))
        if group:
            alerts.extend(self.update(current, group))
        return alerts

    def settings_dict(self) -> dict[str, Any]:
        return asdict(self.settings)


def detect_collapse(
    scalars: Any,
    settings: CollapseSettings | None = None,
    *,
    indicators: Iterable[str] | None = None,
) -> list[Alert]:
    """Replay a scalar table (``RunReader.scalars()``: columns ``step, metric, layer,
    value``; or an iterable of ``(step, metric, layer, value)``) through the detectors,
    in step order (rows of one step in their given order), and return every alert."""
    if hasattr(scalars, "itertuples"):
        frame = scalars.sort_values("step", kind="stable")
        rows = [
            (
                int(r.step),
                str(r.metric),
                None if _missing(r.layer) else str(r.layer),
                float(r.value),
            )
            for r in frame.itertuples(index=False)
        ]
    else:
        rows = sorted(((int(s), m, lay, float(v)) for s, m, lay, v in scalars), key=lambda r: r[0])
    return CollapseDetector(settings, indicators=indicators).feed(rows)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
