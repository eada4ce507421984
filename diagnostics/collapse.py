"""Online collapse detectors over recorded metric series.

A :class:`CollapseDetector` is fed the rows a run records, step by step
(``update(step, rows)`` with ``rows`` as ``(metric, layer, value)``), keeps only the
little state it needs (running peaks, short windows), and returns :class:`Alert`
records. :func:`detect_collapse` replays a run's scalar table through the same
detectors offline. The probes' ``Monitor`` runs one after each record and writes the
alerts with ``RunWriter.alert``.

Indicators (names from :data:`diagnostics.schema.INDICATORS`):

``rank_collapse``
    The effective rank of a layer (``repr/effective_rank``) falls toward 1. With ``p``
    the layer's running peak, *warning* when ``erank - 1 <= rank_warn * (p - 1)`` and
    *collapsed* when ``erank - 1 <= rank_collapse * (p - 1)``; only for layers whose peak
    reached ``rank_min_peak``. Motivation: RankMe (Garrido et al. 2023) and dimensional
    collapse (Jing et al. 2022) use the effective rank of representations as the
    collapse signal. Note that supervised training also lowers the rank of the last
    layers on purpose (neural collapse: Papyan et al. 2020); read warnings there in
    that light.
``entropy_collapse``
    Representation entropy (``repr/dse``, ``repr/von_neumann``) falls from its running
    peak: *warning* at ``entropy_warn`` of the peak, *collapsed* at ``entropy_collapse``
    of it. DSE rises while a network learns (Liao et al. 2023); a fall to a small
    fraction of its peak means the representation concentrated on few directions.
``saturation``
    ``act/saturated_frac`` (bounded activations near their bounds; Glorot & Bengio
    2010) or ``act/dead_frac`` (units that never fire; Lu et al. 2019) at or above
    ``saturation_warn`` (*warning*) or ``saturation_collapse`` (*collapsed*).
``memorisation``
    Over the last ``memorisation_window`` records of ``repr/dsmi_y`` of a layer, the
    training loss (``loss_metric``) fell by at least ``memorisation_loss_drop`` of its
    level while DSMI with the labels rose by less than ``memorisation_dsmi_rise`` of
    ``max(|DSMI|, memorisation_dsmi_floor)``: the loss improves without the layer
    learning more about the labels, what Liao et al. (2023) observe when a network
    memorises random labels. *warning*.
``compression_onset``
    The information plane's I(X;T) of a layer (``info_plane/{estimator}/I_XT``) falls
    ``compression_drop`` (relative) below its running peak while I(T;Y) stays within
    the same tolerance of its value at that peak: the start of the compression phase
    of Shwartz-Ziv & Tishby (2017) (which Saxe et al. 2018 show depends on the
    activation and the estimator). *info*.

Every condition must hold on ``patience`` consecutive records before it is reported,
and an alert is written when a series first reaches a severity (or a higher one): a
condition that persists is not re-reported at every step. After it has been clear for
``patience`` records, a recurrence is reported again.

The default thresholds are heuristics chosen to flag clear cases; the papers above
motivate the signals, not these numbers. Change them with :class:`CollapseSettings`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Alert",
    "CollapseAlert",
    "CollapseSettings",
    "CollapseDetector",
    "detect_collapse",
    "DETECTORS",
]

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


@dataclass(frozen=True)
class CollapseSettings:
    """Thresholds of the collapse detectors (see the module docstring for each rule)."""

    #: consecutive records a condition must hold before it is reported
    patience: int = 2
    #: effective-rank series watched by ``rank_collapse``
    rank_metric: str = "repr/effective_rank"
    #: warning when ``erank - 1 <= rank_warn * (peak - 1)``
    rank_warn: float = 0.5
    #: collapsed when ``erank - 1 <= rank_collapse * (peak - 1)``
    rank_collapse: float = 0.1
    #: layers whose effective rank never reached this are not judged
    rank_min_peak: float = 2.0
    #: entropy series watched by ``entropy_collapse``
    entropy_metrics: tuple[str, ...] = ("repr/dse", "repr/von_neumann")
    #: warning when entropy <= entropy_warn * running peak
    entropy_warn: float = 0.5
    #: collapsed when entropy <= entropy_collapse * running peak
    entropy_collapse: float = 0.1
    #: entropies whose peak stayed below this (nats) are not judged
    entropy_min_peak: float = 1e-3
    #: fraction series watched by ``saturation``
    saturation_metrics: tuple[str, ...] = ("act/saturated_frac", "act/dead_frac")
    saturation_warn: float = 0.5
    saturation_collapse: float = 0.9
    #: the training-loss series used by ``memorisation``
    loss_metric: str = "train/loss"
    dsmi_metric: str = "repr/dsmi_y"
    #: DSMI records spanned by the memorisation window
    memorisation_window: int = 5
    #: relative fall of the loss over the window that counts as "still improving"
    memorisation_loss_drop: float = 0.2
    #: relative DSMI rise below which DSMI "stagnates"
    memorisation_dsmi_rise: float = 0.05
    #: floor (nats) of the DSMI scale in the relative rise
    memorisation_dsmi_floor: float = 0.01
    #: prefix of the information-plane series (``{prefix}{estimator}/I_XT``)
    info_plane_prefix: str = "info_plane/"
    #: relative fall of I(X;T) below its peak that marks compression
    compression_drop: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience: expected an integer >= 1, got {self.patience!r}")
        if not isinstance(self.memorisation_window, int) or self.memorisation_window < 2:
            raise ValueError(
                f"memorisation_window: expected an integer >= 2, got {self.memorisation_window!r}"
            )
        for name in (
            "rank_warn",
            "rank_collapse",
            "entropy_warn",
            "entropy_collapse",
            "saturation_warn",
            "saturation_collapse",
            "memorisation_loss_drop",
            "compression_drop",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ValueError(f"{name}: expected a number in [0, 1], got {v!r}")
        if self.rank_collapse > self.rank_warn:
            raise ValueError(
                f"rank_collapse: expected <= rank_warn ({self.rank_warn}), got {self.rank_collapse}"
            )
        if self.entropy_collapse > self.entropy_warn:
            raise ValueError(
                f"entropy_collapse: expected <= entropy_warn ({self.entropy_warn}), "
                f"got {self.entropy_collapse}"
            )
        if self.saturation_collapse < self.saturation_warn:
            raise ValueError(
                f"saturation_collapse: expected >= saturation_warn ({self.saturation_warn}), "
                f"got {self.saturation_collapse}"
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


class _PeakFraction(_Detector):
    """Shared rule: compare a series with its running peak, with per-series debounce."""

    def _levels(self, metric: str) -> tuple[float, float, float]:
        raise NotImplementedError  # pragma: no cover

    def _score(self, value: float, peak: float) -> float:
        return value / peak

    def observe(self, step, metric, layer, value):
        if not _finite(value):
            return []
        key = (metric, layer)
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = {
                "peak": value,
                "peak_step": step,
                "debounce": _Debounce(self.s.patience),
                "recent": deque(maxlen=max(2, self.s.patience + 1)),
            }
        if value > st["peak"]:
            st["peak"], st["peak_step"] = value, step
        st["recent"].append((step, value))
        warn, collapse, min_peak = self._levels(metric)
        peak = st["peak"]
        level = 0
        if peak >= min_peak:
            score = self._score(value, peak)
            level = 2 if score <= collapse else 1 if score <= warn else 0
        report = st["debounce"].update(level)
        if not report:
            return []
        severity = _LEVELS[report]
        threshold = collapse if report == 2 else warn
        steps, values = zip(*st["recent"])
        return [
            Alert(
                step=step,
                indicator=self.indicator,
                severity=severity,
                layer=layer,
                message=self._message(metric, layer, value, peak, st["peak_step"], threshold),
                evidence={
                    "series": metric,
                    "layer": layer,
                    "steps": list(steps),
                    "values": list(values),
                    "peak": peak,
                    "peak_step": st["peak_step"],
                    "rule": self._rule(report),
                    "threshold": threshold,
                    "patience": self.s.patience,
                },
            )
        ]


class RankCollapse(_PeakFraction):
    indicator = "rank_collapse"

    def watches(self, metric: str) -> bool:
        return metric == self.s.rank_metric

    def _levels(self, metric):
        return self.s.rank_warn, self.s.rank_collapse, self.s.rank_min_peak

    def _score(self, value, peak):
        return (value - 1.0) / (peak - 1.0)

    def _rule(self, level: int) -> str:
        name = "rank_collapse" if level == 2 else "rank_warn"
        return f"(erank - 1) <= {name} * (peak - 1)"

    def _message(self, metric, layer, value, peak, peak_step, threshold):
        return (
            f"effective rank of {layer or 'the model'} fell to {value:.3g} "
            f"(peak {peak:.3g} at step {peak_step}; threshold {threshold:g} of the way above 1)"
        )


class EntropyCollapse(_PeakFraction):
    indicator = "entropy_collapse"

    def watches(self, metric: str) -> bool:
        return metric in self.s.entropy_metrics

    def _levels(self, metric):
        return self.s.entropy_warn, self.s.entropy_collapse, self.s.entropy_min_peak

    def _rule(self, level: int) -> str:
        name = "entropy_collapse" if level == 2 else "entropy_warn"
        return f"value <= {name} * peak"

    def _message(self, metric, layer, value, peak, peak_step, threshold):
        return (
            f"{metric} of {layer or 'the model'} fell to {value:.3g} nats, "
            f"{value / peak:.0%} of its peak {peak:.3g} (step {peak_step}; threshold {threshold:.0%})"
        )


class Saturation(_Detector):
    indicator = "saturation"

    def watches(self, metric: str) -> bool:
        return metric in self.s.saturation_metrics

    def observe(self, step, metric, layer, value):
        if not _finite(value):
            return []
        key = (metric, layer)
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = {
                "debounce": _Debounce(self.s.patience),
                "recent": deque(maxlen=self.s.patience + 1),
            }
        st["recent"].append((step, value))
        level = (
            2
            if value >= self.s.saturation_collapse
            else 1
            if value >= self.s.saturation_warn
            else 0
        )
        report = st["debounce"].update(level)
        if not report:
            return []
        threshold = self.s.saturation_collapse if report == 2 else self.s.saturation_warn
        what = "dead units" if metric.endswith("dead_frac") else "saturated activations"
        steps, values = zip(*st["recent"])
        return [
            Alert(
                step=step,
                indicator=self.indicator,
                severity=_LEVELS[report],
                layer=layer,
                message=f"{value:.0%} {what} in {layer or 'the model'} (threshold {threshold:.0%})",
                evidence={
                    "series": metric,
                    "layer": layer,
                    "steps": list(steps),
                    "values": list(values),
                    "rule": f"value >= {'saturation_collapse' if report == 2 else 'saturation_warn'}",
                    "threshold": threshold,
                    "patience": self.s.patience,
                },
            )
        ]


class Memorisation(_Detector):
    indicator = "memorisation"

    def __init__(self, settings: CollapseSettings) -> None:
        super().__init__(settings)
        self.loss: deque[tuple[int, float]] = deque(maxlen=100_000)

    def watches(self, metric: str) -> bool:
        return metric in (self.s.loss_metric, self.s.dsmi_metric)

    def _loss_level(self, lo: int | None, hi: int) -> float | None:
        """Mean loss over steps in ``(lo, hi]``; else the last loss at or before ``hi``."""
        vals = [v for s, v in self.loss if (lo is None or s > lo) and s <= hi]
        if vals:
            return sum(vals) / len(vals)
        before = [v for s, v in self.loss if s <= hi]
        return before[-1] if before else None

    def observe(self, step, metric, layer, value):
        if not _finite(value):
            return []
        if metric == self.s.loss_metric:
            if layer is None:
                self.loss.append((step, value))
            return []
        w = self.s.memorisation_window
        st = self.state.get(layer)
        if st is None:
            st = self.state[layer] = {
                "dsmi": deque(maxlen=w + 1),
                "debounce": _Debounce(self.s.patience),
            }
        st["dsmi"].append((step, value))
        self._prune(step)
        hist = list(st["dsmi"])
        if len(hist) < w:
            st["debounce"].update(0)
            return []
        window = hist[-w:]
        prev = hist[-w - 1][0] if len(hist) > w else None
        (s_a, d_a), (s_b, d_b) = window[0], window[-1]
        l_a = self._loss_level(prev, s_a)
        l_b = self._loss_level(window[-2][0], s_b)
        if l_a is None or l_b is None or l_a == 0:
            st["debounce"].update(0)
            return []
        loss_drop = (l_a - l_b) / abs(l_a)
        scale = max(abs(d_a), abs(d_b), self.s.memorisation_dsmi_floor)
        dsmi_rise = (d_b - d_a) / scale
        hit = (
            loss_drop >= self.s.memorisation_loss_drop and dsmi_rise < self.s.memorisation_dsmi_rise
        )
        if not st["debounce"].update(1 if hit else 0):
            return []
        return [
            Alert(
                step=step,
                indicator=self.indicator,
                severity="warning",
                layer=layer,
                message=(
                    f"training loss fell {loss_drop:.0%} (from {l_a:.3g} to {l_b:.3g}) over steps "
                    f"{s_a}-{s_b} while DSMI with the labels in {layer or 'the model'} moved "
                    f"{dsmi_rise:+.1%} ({d_a:.3g} -> {d_b:.3g} nats): possible memorisation"
                ),
                evidence={
                    "series": [self.s.loss_metric, self.s.dsmi_metric],
                    "layer": layer,
                    "steps": [s for s, _ in window],
                    "dsmi": [v for _, v in window],
                    "loss_start": l_a,
                    "loss_end": l_b,
                    "loss_drop": loss_drop,
                    "dsmi_rise": dsmi_rise,
                    "rule": "loss_drop >= memorisation_loss_drop and dsmi_rise < memorisation_dsmi_rise",
                    "thresholds": {
                        "memorisation_loss_drop": self.s.memorisation_loss_drop,
                        "memorisation_dsmi_rise": self.s.memorisation_dsmi_rise,
                        "memorisation_dsmi_floor": self.s.memorisation_dsmi_floor,
                        "memorisation_window": self.s.memorisation_window,
                    },
                    "patience": self.s.patience,
                },
            )
        ]

    def observe_step(self, step, rows):
        # the loss of this step counts before the DSMI recorded at the same step
        rows = sorted(rows, key=lambda r: r[0] != self.s.loss_metric)
        return super().observe_step(step, rows)

    def _prune(self, step: int) -> None:
        oldest = min((st["dsmi"][0][0] for st in self.state.values() if st["dsmi"]), default=step)
        while len(self.loss) > 1 and self.loss[1][0] <= oldest:
            self.loss.popleft()


class CompressionOnset(_Detector):
    indicator = "compression_onset"

    def watches(self, metric: str) -> bool:
        p = self.s.info_plane_prefix
        return metric.startswith(p) and (metric.endswith("/I_XT") or metric.endswith("/I_TY"))

    def observe_step(self, step, rows):
        pairs: dict[tuple[str, str | None], dict[str, float]] = {}
        for metric, layer, value in rows:
            estimator = metric[len(self.s.info_plane_prefix) : -len("/I_XT")]
            pairs.setdefault((estimator, layer), {})[metric[-4:]] = value
        alerts: list[Alert] = []
        for key, got in pairs.items():
            ixt, ity = got.get("I_XT"), got.get("I_TY")
            if _finite(ixt) and _finite(ity):
                alerts.extend(self._judge(step, key, ixt, ity))
        return alerts

    def _judge(self, step, key, ixt, ity):
        estimator, layer = key
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = {
                "peak": ixt,
                "peak_step": step,
                "ity_at_peak": ity,
                "debounce": _Debounce(self.s.patience),
                "recent": deque(maxlen=self.s.patience + 1),
            }
        if ixt > st["peak"]:
            st["peak"], st["peak_step"], st["ity_at_peak"] = ixt, step, ity
        st["recent"].append((step, ixt, ity))
        peak, peak_step, ity_peak = st["peak"], st["peak_step"], st["ity_at_peak"]
        drop = self.s.compression_drop
        hit = peak > 0 and ixt <= (1 - drop) * peak and ity >= (1 - drop) * ity_peak
        if not st["debounce"].update(1 if hit else 0):
            return []
        steps, ixts, itys = zip(*st["recent"])
        return [
            Alert(
                step=step,
                indicator=self.indicator,
                severity="info",
                layer=layer,
                message=(
                    f"compression phase: I(X;T) of {layer or 'the model'} ({estimator}) fell to "
                    f"{ixt:.3g} from its peak {peak:.3g} at step {peak_step} while I(T;Y) held "
                    f"({ity_peak:.3g} -> {ity:.3g} nats)"
                ),
                evidence={
                    "series": [
                        f"{self.s.info_plane_prefix}{estimator}/I_XT",
                        f"{self.s.info_plane_prefix}{estimator}/I_TY",
                    ],
                    "estimator": estimator,
                    "layer": layer,
                    "steps": list(steps),
                    "I_XT": list(ixts),
                    "I_TY": list(itys),
                    "peak": peak,
                    "peak_step": peak_step,
                    "I_TY_at_peak": ity_peak,
                    "rule": (
                        "I_XT <= (1 - compression_drop) * peak and "
                        "I_TY >= (1 - compression_drop) * I_TY_at_peak"
                    ),
                    "threshold": drop,
                    "patience": self.s.patience,
                },
            )
        ]


#: the alert record under its exported name (``diagnostics.CollapseAlert``)
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


def settings_from_mapping(values: Mapping[str, Any]) -> CollapseSettings:
    """Build settings from a dict (unknown keys raise, naming the known ones)."""
    known = set(CollapseSettings.__dataclass_fields__)
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(
            f"collapse settings: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    return CollapseSettings(**values)
