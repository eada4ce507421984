"""``CollapseDetector`` runs every detector online over the rows a run records, step by step;
the probes run one after each record and write its alerts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from diagnostics.detectors.attention import AttentionCollapse, EntropicOverload
from diagnostics.detectors.base import Alert, Context, Detector, takes_rows_one_by_one
from diagnostics.detectors.compression import CompressionOnset
from diagnostics.detectors.divergence import LossDivergence
from diagnostics.detectors.lm import OverOptimisation, PositiveCovariance, TokenEntropyCollapse
from diagnostics.detectors.memorisation import Memorisation
from diagnostics.detectors.representation import EntropyCollapse, RankCollapse, Saturation
from diagnostics.detectors.settings import CollapseSettings

#: indicator name -> detector class, for every indicator of :data:`diagnostics.schema.INDICATORS`
DETECTORS: dict[str, type[Detector]] = {
    d.indicator: d
    for d in (
        RankCollapse,
        EntropyCollapse,
        Saturation,
        Memorisation,
        CompressionOnset,
        LossDivergence,
        TokenEntropyCollapse,
        OverOptimisation,
        PositiveCovariance,
        AttentionCollapse,
        EntropicOverload,
    )
}

#: the alert record under its exported name (``diagnostics.CollapseAlert``)
CollapseAlert = Alert


class CollapseDetector:
    """Run the detectors online.

    Parameters
    ----------
    settings:
        Thresholds (:class:`CollapseSettings`; defaults when omitted).
    indicators:
        Which detectors to run (names of :data:`DETECTORS`); all by default.
    context:
        What the run tells the detectors beyond its series (:class:`Context`: number of
        classes, label entropy, output layers, layer order).

    >>> det = CollapseDetector(CollapseSettings(patience=1, collapse_patience=1))
    >>> det.update(0, [("repr/effective_rank", "fc1", 20.0)])
    []
    >>> [a.severity for a in det.update(1, [("repr/effective_rank", "fc1", 1.2)])]
    ['critical']
    >>> det.update(2, [("repr/effective_rank", "fc1", 1.1)])  # not repeated
    []
    """

    def __init__(
        self,
        settings: CollapseSettings | None = None,
        *,
        indicators: Iterable[str] | None = None,
        context: Context | None = None,
    ) -> None:
        self.settings = settings if settings is not None else CollapseSettings()
        if not isinstance(self.settings, CollapseSettings):
            raise TypeError(
                f"settings: expected a CollapseSettings, got {type(self.settings).__name__}"
            )
        self.context = context if context is not None else Context()
        if not isinstance(self.context, Context):
            raise TypeError(f"context: expected a Context, got {type(self.context).__name__}")
        names = list(DETECTORS) if indicators is None else list(indicators)
        for n in names:
            if n not in DETECTORS:
                raise ValueError(
                    f"indicators: expected names among {', '.join(DETECTORS)}, got {n!r}"
                )
        self.detectors = [DETECTORS[n](self.settings, self.context) for n in names]
        self._per_row = [takes_rows_one_by_one(d) for d in self.detectors]
        # metric -> the detectors that read it, as (position, detector) in detector order
        self._routes: dict[str, tuple[tuple[int, Detector], ...]] = {}

    def _route(self, metric: str) -> tuple[tuple[int, Detector], ...]:
        r = self._routes.get(metric)
        if r is None:
            r = self._routes[metric] = tuple(
                (i, d) for i, d in enumerate(self.detectors) if d.watches(metric)
            )
        return r

    def watches(self, metric: str) -> bool:
        """Whether any detector reads this metric (the probes feed only those)."""
        return bool(self._route(metric))

    def update(self, step: int, rows: Iterable[tuple[str, str | None, float]]) -> list[Alert]:
        """Feed the rows recorded at ``step`` (``(metric, layer, value)``); return new alerts."""
        routes = self._routes
        if isinstance(rows, list) and len(rows) == 1:  # a training loss per step
            metric, layer, value = rows[0]
            route = routes.get(metric)
            if route is None:
                route = self._route(metric)
            out: list[Alert] = []
            if route:
                step, value = int(step), float(value)
                for i, det in route:
                    got = (
                        det.observe(step, metric, layer, value)
                        if self._per_row[i]
                        else det.observe_step(step, [(metric, layer, value)])
                    )
                    if got:
                        out.extend(got)
            return out
        per: dict[int, tuple[Detector, list[tuple[str, str | None, float]]]] = {}
        for metric, layer, value in rows:
            route = routes.get(metric)
            if route is None:
                route = self._route(metric)
            for i, det in route:
                got = per.get(i)
                if got is None:
                    got = per[i] = (det, [])
                got[1].append((metric, layer, float(value)))
        if not per:
            return []
        step = int(step)
        alerts: list[Alert] = []
        for i in sorted(per) if len(per) > 1 else per:  # in detector order
            det, got = per[i]
            alerts.extend(det.observe_step(step, got))
        return alerts

    def feed(self, rows: Iterable[tuple[int, str, str | None, float]]) -> list[Alert]:
        """Feed ``(step, metric, layer, value)`` rows (steps in order); return new alerts.

        Rows of metrics no detector reads are dropped before grouping by step."""
        alerts: list[Alert] = []
        group: list[tuple[str, str | None, float]] = []
        current = None
        routes = self._routes
        for step, metric, layer, value in rows:
            route = routes.get(metric)
            if route is None:
                route = self._route(metric)
            if not route:
                continue
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
