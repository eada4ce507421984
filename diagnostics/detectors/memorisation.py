"""Memorisation detector: the training loss keeps falling while a layer's DSMI with the
labels stagnates (Liao et al. 2023, random-label training).
"""

from __future__ import annotations

from collections import deque

from diagnostics.detectors.base import Alert, _Debounce, _Detector, _finite
from diagnostics.detectors.settings import CollapseSettings


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
                "first": value,
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
        first = st["first"]
        learned = (d_b - first) / max(abs(first), self.s.memorisation_dsmi_floor)
        hit = (
            loss_drop >= self.s.memorisation_loss_drop
            and dsmi_rise < self.s.memorisation_dsmi_rise
            and learned < self.s.memorisation_learned_gain
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
                    "dsmi_first": first,
                    "dsmi_gain_since_first": learned,
                    "rule": "loss_drop >= memorisation_loss_drop and dsmi_rise < "
                    "memorisation_dsmi_rise and dsmi_gain_since_first < memorisation_learned_gain",
                    "thresholds": {
                        "memorisation_loss_drop": self.s.memorisation_loss_drop,
                        "memorisation_dsmi_rise": self.s.memorisation_dsmi_rise,
                        "memorisation_dsmi_floor": self.s.memorisation_dsmi_floor,
                        "memorisation_learned_gain": self.s.memorisation_learned_gain,
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
