"""Memorisation detector: the training loss keeps falling while a layer's DSMI with the labels
stagnates (Liao et al. 2023, who observe it when a network memorises random labels)."""

from __future__ import annotations

from collections import deque

from diagnostics.detectors.base import (
    WARNING,
    Context,
    Debounce,
    Detector,
    Window,
    evidence,
    finite,
)


class Memorisation(Detector):
    """Over the last ``memorisation_window`` records of ``repr/dsmi_y`` of a layer, the training
    loss fell by at least ``memorisation_loss_drop`` of its level while DSMI with the labels
    rose by less than ``memorisation_dsmi_rise`` of ``max(|DSMI|, memorisation_dsmi_floor)``:
    the loss improves without the layer learning more about the labels. A layer whose DSMI
    already rose by ``memorisation_learned_gain`` of its first record has learned about the
    labels, and its later plateau while the loss keeps shrinking is ordinary convergence (the
    cost: memorisation that starts only after real learning goes unflagged). *warning*.
    """

    indicator = "memorisation"
    summary = (
        "The training loss keeps falling while the layer's DSMI with the labels stays flat: the "
        "network fits the labels without learning about them (Liao et al. 2023)."
    )

    def __init__(self, settings, context: Context | None = None) -> None:
        super().__init__(settings, context)
        self.loss: deque[tuple[int, float]] = deque(maxlen=100_000)
        self.loss_window = Window(settings.evidence_points)

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
        if not finite(value):
            return []
        if metric == self.s.loss_metric:
            if layer is None:
                self.loss.append((step, value))
                self.loss_window.add(step, value)
            return []
        w = self.s.memorisation_window
        st = self.state.get(layer)
        if st is None:
            st = self.state[layer] = {
                "dsmi": deque(maxlen=w + 1),
                "debounce": Debounce(self.s.patience),
                "first": value,
                "window": Window(self.s.evidence_points),
            }
        st["dsmi"].append((step, value))
        st["window"].add(step, value)
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
        if not st["debounce"].update(WARNING if hit else 0):
            return []
        return [
            self.alert(
                step,
                WARNING,
                f"training loss fell {loss_drop:.0%} (from {l_a:.3g} to {l_b:.3g}) over steps "
                f"{s_a}-{s_b} while DSMI with the labels in {layer or 'the model'} moved "
                f"{dsmi_rise:+.1%} ({d_a:.3g} -> {d_b:.3g} nats): possible memorisation",
                layer,
                evidence(
                    self.s.dsmi_metric,
                    layer,
                    st["window"],
                    # DSMI "stagnates" while it stays below this over the window
                    threshold=d_a + self.s.memorisation_dsmi_rise * scale,
                    direction="below",
                    rule="loss_drop >= memorisation_loss_drop and dsmi_rise < "
                    "memorisation_dsmi_rise and dsmi_gain_since_first < memorisation_learned_gain",
                    settings=self.settings_of(
                        (
                            "memorisation_window",
                            "memorisation_loss_drop",
                            "memorisation_dsmi_rise",
                            "memorisation_dsmi_floor",
                            "memorisation_learned_gain",
                            "patience",
                        )
                    ),
                    related={self.s.loss_metric: self.loss_window},
                    window_steps=[s_a, s_b],
                    loss_start=l_a,
                    loss_end=l_b,
                    loss_drop=loss_drop,
                    dsmi_rise=dsmi_rise,
                    dsmi_first=first,
                    dsmi_gain_since_first=learned,
                ),
            )
        ]

    per_row = True  # observe_step only puts the loss first

    def observe_step(self, step, rows):
        # the loss of this step counts before the DSMI recorded at the same step
        rows = sorted(rows, key=lambda r: r[0] != self.s.loss_metric)
        return super().observe_step(step, rows)

    def _prune(self, step: int) -> None:
        oldest = min((st["dsmi"][0][0] for st in self.state.values() if st["dsmi"]), default=step)
        while len(self.loss) > 1 and self.loss[1][0] <= oldest:
            self.loss.popleft()
