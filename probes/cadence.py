"""When to record: every N steps, log-spaced steps, or an explicit list.

A cadence answers one question, ``due(step) -> bool``, in constant time and without
state, so that a step where nothing is recorded costs a modulo and a comparison; and
``next_due(step)``, the first step ``>= step`` at which it is due, which lets the monitor
skip the steps in between with one comparison.

- :class:`Every` ``(n, start=0)``: steps ``start, start + n, start + 2n, ...``.
- :class:`LogSpaced` ``(per_decade=10)``: steps ``round(10 ** (k / per_decade))`` for
  ``k = 0, 1, 2, ...`` (and step 0): dense early, sparse late. The information-plane
  papers (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018) sample epochs log-spaced because
  the interesting movement happens early.
- :class:`Steps` ``(steps)``: an explicit set of steps.
- :class:`Never`: nothing is ever due (a metric switched off by cadence).

:func:`as_cadence` turns user input into a cadence: an ``int`` is :class:`Every`, a
list of ints is :class:`Steps`, the string ``"log"`` is :class:`LogSpaced`, ``None`` is
:class:`Never`.
"""

from __future__ import annotations

import bisect
import math
import numbers
import sys
from collections.abc import Iterable

__all__ = ["Cadence", "Every", "LogSpaced", "Steps", "Never", "as_cadence"]


class Cadence:
    """Base class: subclasses implement ``due(step) -> bool``."""

    def due(self, step: int) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def next_due(self, step: int) -> int:
        """The first step ``>= step`` at which this cadence is due (``sys.maxsize`` for
        never). The base class cannot tell and answers ``step`` (check that step): a
        custom cadence need only implement :meth:`due`."""
        return step

    def scaled(self, factor: int) -> Cadence:
        """A sparser cadence for expensive metrics (``factor`` times fewer points where
        that makes sense; the same cadence otherwise)."""
        return self

    def __call__(self, step: int) -> bool:
        return self.due(step)

    def describe(self) -> str:
        return repr(self)


class Every(Cadence):
    """Every ``n`` steps, from ``start`` on: due when ``step >= start`` and
    ``(step - start) % n == 0``.

    >>> [s for s in range(10) if Every(3).due(s)]
    [0, 3, 6, 9]
    """

    __slots__ = ("n", "start")

    def __init__(self, n: int, start: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"every: expected an integer >= 1, got {n!r}")
        if isinstance(start, bool) or not isinstance(start, numbers.Integral):
            raise ValueError(f"start: expected an integer, got {start!r}")
        self.n = int(n)
        self.start = int(start)

    def due(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.n == 0

    def next_due(self, step: int) -> int:
        if step <= self.start:
            return self.start
        return step + (-(step - self.start)) % self.n

    def scaled(self, factor: int) -> Cadence:
        return Every(self.n * int(factor), self.start)

    def __repr__(self) -> str:
        return f"Every({self.n})" if self.start == 0 else f"Every({self.n}, start={self.start})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Every) and (self.n, self.start) == (other.n, other.start)

    def __hash__(self) -> int:
        return hash(("Every", self.n, self.start))


class LogSpaced(Cadence):
    """Log-spaced steps: 0 and ``round(10 ** (k / per_decade))`` for ``k = 0, 1, ...``.

    With the default ``per_decade=10``: 0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32,
    40, 50, 63, 79, 100, 126, ... (about ``per_decade`` points per factor of ten).
    ``due`` is O(1): it checks the few ``k`` near ``per_decade * log10(step)``.

    >>> [s for s in range(30) if LogSpaced(5).due(s)]
    [0, 1, 2, 3, 4, 6, 10, 16, 25]
    """

    __slots__ = ("per_decade",)

    def __init__(self, per_decade: float = 10) -> None:
        if isinstance(per_decade, bool) or not isinstance(per_decade, numbers.Real):
            raise ValueError(f"per_decade: expected a number > 0, got {per_decade!r}")
        if not per_decade > 0 or not math.isfinite(per_decade):
            raise ValueError(f"per_decade: expected a number > 0, got {per_decade!r}")
        self.per_decade = float(per_decade)

    def _at(self, k: int) -> int:
        return int(round(10.0 ** (k / self.per_decade)))

    def due(self, step: int) -> bool:
        if step <= 1:
            return step >= 0
        k = self.per_decade * math.log10(step)
        lo = max(0, math.floor(k) - 1)
        return any(self._at(j) == step for j in range(lo, math.ceil(k) + 2))

    def next_due(self, step: int) -> int:
        if step <= 1:
            return max(step, 0)
        j = max(0, math.floor(self.per_decade * math.log10(step)) - 1)
        while self._at(j) < step:
            j += 1
        return self._at(j)

    def __repr__(self) -> str:
        pd = int(self.per_decade) if self.per_decade.is_integer() else self.per_decade
        return f"LogSpaced({pd})"


class Steps(Cadence):
    """An explicit set of steps.

    >>> Steps([5, 1, 5]).due(5), Steps([5, 1]).due(2)
    (True, False)
    """

    __slots__ = ("steps", "_sorted")

    def __init__(self, steps: Iterable[int]) -> None:
        out = set()
        for s in steps:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral):
                raise ValueError(f"steps: expected integers, got {s!r}")
            out.add(int(s))
        self.steps = frozenset(out)
        self._sorted = tuple(sorted(out))

    def due(self, step: int) -> bool:
        return step in self.steps

    def next_due(self, step: int) -> int:
        i = bisect.bisect_left(self._sorted, step)
        return self._sorted[i] if i < len(self._sorted) else sys.maxsize

    def __repr__(self) -> str:
        shown = sorted(self.steps)
        body = ", ".join(map(str, shown[:8])) + (", ..." if len(shown) > 8 else "")
        return f"Steps([{body}])"


class Never(Cadence):
    """Never due."""

    def due(self, step: int) -> bool:
        return False

    def next_due(self, step: int) -> int:
        return sys.maxsize

    def __repr__(self) -> str:
        return "Never()"


def as_cadence(
    value: int | str | Iterable[int] | Cadence | None, *, name: str = "every"
) -> Cadence:
    """Turn ``value`` into a :class:`Cadence` (see the module docstring).

    >>> as_cadence(100), as_cadence("log"), as_cadence([1, 10])
    (Every(100), LogSpaced(10), Steps([1, 10]))
    """
    if isinstance(value, Cadence):
        return value
    if value is None:
        return Never()
    if isinstance(value, str):
        if value == "log":
            return LogSpaced()
        raise ValueError(
            f"{name}: expected an int, 'log', a list of steps or a Cadence, got {value!r}"
        )
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value}")
        return Every(int(value))
    if callable(value):
        return _Callable(value)
    if isinstance(value, Iterable):
        try:
            return Steps(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    raise ValueError(
        f"{name}: expected an int, 'log', a list of steps or a Cadence, got {type(value).__name__}"
    )


class _Callable(Cadence):
    """A user function ``step -> bool``."""

    __slots__ = ("fn",)

    def __init__(self, fn) -> None:
        self.fn = fn

    def due(self, step: int) -> bool:
        return bool(self.fn(step))

    def __repr__(self) -> str:
        return f"Cadence({getattr(self.fn, '__name__', 'fn')})"
