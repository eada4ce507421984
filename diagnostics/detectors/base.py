"""What every detector shares: the :class:`Alert` record (one type, one severity scale for every
indicator), the run :class:`Context` a judgement may need, the :class:`Detector` interface, and
the small state machines the rules are built from (debounce, rolling median, evidence window).

Severities (:data:`diagnostics.schema.SEVERITIES`): ``info`` marks a phase of training worth
noting, ``warning`` something a user should look at, ``critical`` a run that is failing.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from diagnostics.schema import INDICATORS, SEVERITIES, SEVERITY_RANK

#: raw level of a rule (0 clear, then the severities' ranks) -> severity
LEVEL_SEVERITY = {rank: severity for severity, rank in SEVERITY_RANK.items()}
INFO, WARNING, CRITICAL = (SEVERITY_RANK[s] for s in SEVERITIES)


@dataclass(frozen=True)
class Alert:
    """One judgement of one detector: what fired, how bad, where, and the evidence.

    ``evidence`` follows the layout documented in :mod:`diagnostics.schema` (``metric``,
    ``layer``, ``steps``, ``values``, ``threshold``, ``direction``, ``rule``, ``settings``,
    ``related``), so that the dashboard can draw the series that fired and its threshold.
    ``write_to(writer)`` records it with :meth:`RunWriter.alert`.
    """

    step: int
    indicator: str
    severity: str
    message: str
    layer: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.indicator not in INDICATORS:
            raise ValueError(
                f"indicator: expected one of {', '.join(INDICATORS)}, got {self.indicator!r}"
            )
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"severity: expected one of {', '.join(SEVERITIES)}, got {self.severity!r}"
            )

    @property
    def rank(self) -> int:
        """1 for ``info``, 2 for ``warning``, 3 for ``critical``."""
        return SEVERITY_RANK[self.severity]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
class Context:
    """What a run tells the detectors beyond its series.

    ``n_classes``: the number of classes of a classifier's labels (the rank and entropy a
    layer should keep; from the probe labels). ``label_entropy``: H(Y) of those labels in nats
    (how much label information there is to predict). ``output_layers``: layers whose
    activations are the model's prediction (their information-plane compression happens
    whatever the hidden activations do). ``layer_order``: layer names in depth order (the
    attention detectors' deep and early layers; natural sort of the names when empty).
    ``rl``: whether the run is RL fine-tuning (token-entropy collapse is judged there only);
    ``None`` decides from the series (a run that records rewards or covariances is).
    Written to a run's meta as ``detector_context`` so that a replay judges alike.
    """

    n_classes: int | None = None
    label_entropy: float | None = None
    output_layers: tuple[str, ...] = ()
    layer_order: tuple[str, ...] = ()
    rl: bool | None = None

    def __post_init__(self) -> None:
        if self.n_classes is not None and (
            isinstance(self.n_classes, bool) or int(self.n_classes) != self.n_classes
        ):
            raise TypeError(f"n_classes: expected an integer or None, got {self.n_classes!r}")
        if self.n_classes is not None and self.n_classes < 1:
            raise ValueError(f"n_classes: expected an integer >= 1, got {self.n_classes}")
        object.__setattr__(self, "output_layers", tuple(str(x) for x in self.output_layers))
        object.__setattr__(self, "layer_order", tuple(str(x) for x in self.layer_order))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Context:
        """From a plain dict (as stored in a run's meta); unknown keys raise, naming them."""
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"context: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> Context:
        """The context a run recorded (``meta["detector_context"]``), else an empty one."""
        stored = (meta or {}).get("detector_context")
        return cls.from_mapping(stored) if isinstance(stored, Mapping) else cls()

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_classes": self.n_classes,
            "label_entropy": self.label_entropy,
            "output_layers": list(self.output_layers),
            "layer_order": list(self.layer_order),
            "rl": self.rl,
        }


class Debounce:
    """Turn per-record raw levels (0 clear, 1 info, 2 warning, 3 critical) into reports.

    The held level is the lowest of the last ``patience`` records; it is reported when it
    exceeds the last reported level (so a condition that persists is reported once, and an
    escalation is reported). When the last ``patience`` records are all clear, the reported
    level resets to 0 so that a recurrence is reported again.
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


class RollingMedian:
    """Trailing median of the last ``window`` values (a single noisy point neither raises nor
    hides an alert)."""

    __slots__ = ("values",)

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)

    def add(self, value: float) -> float:
        self.values.append(value)
        ordered = sorted(self.values)
        n = len(ordered)
        mid = n // 2
        return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


class Window:
    """The last ``n`` ``(step, value)`` points of a series, for an alert's evidence."""

    __slots__ = ("points",)

    def __init__(self, n: int) -> None:
        self.points: deque[tuple[int, float]] = deque(maxlen=n)

    def add(self, step: int, value: float) -> None:
        self.points.append((int(step), float(value)))

    def steps(self) -> list[int]:
        return [s for s, _ in self.points]

    def values(self) -> list[float]:
        return [v for _, v in self.points]

    def as_related(self) -> dict[str, list]:
        return {"steps": self.steps(), "values": self.values()}


def finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def jsonable(x: Any) -> Any:
    """Evidence as plain JSON types (numpy scalars unwrapped; NaN and inf as None)."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return jsonable(x.tolist())
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


def evidence(
    metric: str,
    layer: str | None,
    window: Window,
    *,
    threshold: float | None,
    direction: str,
    rule: str,
    settings: Mapping[str, Any],
    related: Mapping[str, Window] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The evidence record every detector writes (layout in :mod:`diagnostics.schema`)."""
    ev = {
        "metric": metric,
        "layer": layer,
        "steps": window.steps(),
        "values": window.values(),
        "threshold": threshold,
        "direction": direction,
        "rule": rule,
        "settings": dict(settings),
        **extra,
    }
    if related:
        ev["related"] = {name: w.as_related() for name, w in related.items()}
    return jsonable(ev)


class Detector:
    """One indicator, judged online: fed the rows of each recorded step, it keeps only the
    little state it needs (peaks, short windows) and returns new :class:`Alert` records.

    Subclasses set ``indicator`` (a name of :data:`diagnostics.schema.INDICATORS`) and
    ``summary`` (one sentence and its source, shown by the dashboard), implement
    :meth:`watches` and either :meth:`observe` (one row at a time) or :meth:`observe_step`
    (all the rows of one step that it watches).
    """

    indicator: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: whether :meth:`observe_step` takes the rows one at a time (in whatever order), so
    #: that a step of one row may go straight to :meth:`observe` (the per-step loss). None:
    #: True unless the class overrides :meth:`observe_step` (see :func:`takes_rows_one_by_one`)
    per_row: ClassVar[bool | None] = None

    def __init__(self, settings: Any, context: Context | None = None) -> None:
        self.s = settings
        self.context = context if context is not None else Context()
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

    def alert(
        self, step: int, level: int, message: str, layer: str | None, ev: dict[str, Any]
    ) -> Alert:
        return Alert(
            step=int(step),
            indicator=self.indicator,
            severity=LEVEL_SEVERITY[level],
            message=message,
            layer=layer,
            evidence=ev,
        )

    def settings_of(self, names: Iterable[str]) -> dict[str, Any]:
        """The named settings, for an alert's evidence."""
        return {n: getattr(self.s, n) for n in names}


def takes_rows_one_by_one(detector: Detector) -> bool:
    """Whether a step of one row may skip ``detector.observe_step`` (its ``per_row``, or
    when unset, whether it keeps the base class's row-by-row ``observe_step``)."""
    if detector.per_row is not None:
        return detector.per_row
    return type(detector).observe_step is Detector.observe_step
