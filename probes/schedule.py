"""What runs when: the monitor's metric plan and the time budget for expensive metrics.

A part of :class:`~probes.monitor.Monitor` (a mixin; the monitor's ``__init__`` sets the
state it uses). :meth:`Scheduling._parse_metrics` turns the user's ``metrics`` (names, or
``{name: options}``; :func:`default_metrics` when not given) into one
:class:`ActiveMetric` each: its definition from the registry, its options, its cadence
(``every``, ``slow_every`` for slow metrics, or its own) and the layers it runs on.
At each step the due metrics are those whose cadence is due; :meth:`Scheduling._apply_budget`
then postpones the *expensive* ones while the probes' share of the wall time since the
first step is over ``budget`` (rank 0 decides for every rank). The cadences themselves
are in :mod:`probes.cadence`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from probes import distributed as _dist
from probes.cadence import Cadence, as_cadence
from probes.layers import select_layers
from probes.metrics import MetricDef, get_metric

__all__ = ["ActiveMetric", "Scheduling", "default_metrics"]


def default_metrics(*, has_x: bool, has_y: bool) -> list[str]:
    """The metrics a Monitor records when ``metrics`` is not given."""
    names = ["act_stats", "effective_rank", "grad_norm", "weight_norm", "dse"]
    if has_y:
        names.append("dsmi")
    if has_x and has_y:
        names.append("info_plane")
    return names


@dataclass
class ActiveMetric:
    """A metric as one monitor runs it: ``key`` (name, plus options when given) is what
    failures, the budget and ``deferred`` count under."""

    key: str
    defn: MetricDef
    params: dict[str, Any]
    cadence: Cadence
    layers: tuple[str, ...]
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return self.defn.scope


class Scheduling:
    """The monitor's metric plan and time budget (see the module docstring)."""

    def _parse_metrics(self, metrics: Any) -> list[ActiveMetric]:
        has_x = self.mode == "probe" and self._x_all is not None
        has_y = self.mode == "probe" and self._y_all is not None
        explicit = metrics is not None
        if metrics is None:
            metrics = default_metrics(has_x=has_x, has_y=has_y)
        if isinstance(metrics, Mapping):
            items = list(metrics.items())
        elif isinstance(metrics, str):
            items = [(metrics, None)]
        else:
            items = []
            for m in metrics:
                if isinstance(m, str):
                    items.append((m, None))
                elif isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str):
                    items.append(m)
                else:
                    raise TypeError(
                        "metrics: expected names, (name, options) pairs or a dict "
                        f"{{name: options}}, got {m!r}"
                    )
        active: list[ActiveMetric] = []
        keys: set[str] = set()
        for mname, opts in items:
            defn = get_metric(mname)
            if opts is None:
                opts = {}
            elif isinstance(opts, (int, str, Cadence)) or (
                isinstance(opts, Iterable) and not isinstance(opts, Mapping)
            ):
                opts = {"every": opts}
            elif not isinstance(opts, Mapping):
                raise TypeError(
                    f"metrics[{mname!r}]: expected a dict of options, got {type(opts).__name__}"
                )
            opts = dict(opts)
            missing = defn.missing_requirements()
            if missing:
                msg = (
                    f"metric {mname!r} needs {', '.join(missing)}, which is not available in "
                    "this installation"
                )
                if explicit:
                    raise ImportError(msg)
                self._warn_once(("missing", mname), msg + "; it is left out of the defaults")
                continue
            cad = opts.pop("every", None)
            cadence = (
                as_cadence(cad, name=f"metrics[{mname!r}]['every']")
                if cad is not None
                else (self.slow_every if defn.slow else self.every)
            )
            sel = opts.pop("layers", None)
            lnames: tuple[str, ...] = ()
            if defn.scope != "model":
                if sel is None:
                    lnames = tuple(self.layers)
                else:
                    chosen = select_layers(self.model, sel)
                    lnames = tuple(n for n in chosen if n in self.layers)
                    if not lnames:
                        raise ValueError(
                            f"metrics[{mname!r}]['layers']: selects none of the monitor's "
                            f"layers ({', '.join(self.layers)})"
                        )
            elif sel is not None:
                raise ValueError(f"metrics[{mname!r}]: a model-scope metric takes no 'layers'")
            defn.check_params(opts)
            if defn.scope != "model" and not explicit:
                if "x" in defn.needs and not has_x or "y" in defn.needs and not has_y:
                    continue
            key = mname if not opts else f"{mname}{sorted(opts.items())}"
            if key in keys:
                raise ValueError(f"metrics: {mname!r} is listed twice with the same options")
            keys.add(key)
            active.append(ActiveMetric(key, defn, opts, cadence, lnames))
        return active

    def _quiet_after(self, step: int) -> int:
        """The last step of the quiet stretch after ``step``: the steps up to it need no
        record, no hook armed or disarmed (``step`` returns early); ``step`` itself when
        there is none."""
        if self._closed or (
            self.mode == "live" and (self._armed_names is not None or self._live_capture.attached)
        ):
            return step
        nxt = min((c.next_due(step + 1) for c in self._cadences), default=sys.maxsize)
        if self.mode == "live" and not self._explicit_arming:
            nxt -= self._stride  # hooks are armed one stride before a recorded step
        return max(step, nxt - 1)

    def _apply_budget(self, step: int, due: list[ActiveMetric], now: float) -> list[ActiveMetric]:
        """Drop the expensive metrics from ``due`` unless the monitor's time since the first
        step, with what this record is expected to cost, stays within ``budget`` times the
        training time (rank 0 decides for every rank).

        The expected cost is that of the last record of the same expensive metrics (0 for a
        set not run yet, which then runs when the share is within the budget), so that the
        share does not overshoot the budget by a record. The first record with an expensive
        metric always runs."""
        expensive = tuple(a.key for a in due if a.defn.expensive)
        if not expensive:
            return due
        train = (now - self._t_first) - self._t_monitor
        cost = self._record_costs.get(expensive, 0.0)
        allow = not self._record_costs or self._t_monitor + cost <= self.budget * max(train, 0.0)
        if self.world_size > 1:
            allow = _dist.broadcast_flag(allow, self.device)
        if allow:
            return due
        kept = []
        for a in due:
            if not a.defn.expensive:
                kept.append(a)
                continue
            n = self.deferred.get(a.key, 0) + 1
            self.deferred[a.key] = n
            if n == 1 and self.rank == 0:
                self._event(
                    step,
                    "probe_deferred",
                    f"{a.defn.name} postponed: the probes already took more than "
                    f"{self.budget:.0%} of the training time (Monitor(budget=...)); it runs "
                    "again at a due step once the share is below the budget",
                    source=a.defn.name,
                    detail={"metric": a.key, "budget": self.budget},
                )
        return kept
