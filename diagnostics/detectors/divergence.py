"""Loss-divergence detector: the training loss leaves its starting level upward or stops being
a number, the signature of a learning rate too large for the model (the "divergence" of every
optimisation text; e.g. Goodfellow, Bengio & Courville 2016, sec. 8.5)."""

from __future__ import annotations

import math

from diagnostics.detectors.base import (
    CRITICAL,
    WARNING,
    Debounce,
    Detector,
    RollingMedian,
    Window,
    evidence,
)


class LossDivergence(Detector):
    """The whole-model training loss (``loss_metric``) against its first recorded value
    ``L0``: *critical* when it is NaN or infinite, or when its trailing median over
    ``divergence_window`` records reaches ``divergence_critical`` (10) times ``L0``; *warning*
    at ``divergence_warn`` (2) times ``L0``. Only losses that are positive (cross-entropy,
    squared error) are judged for size: a series that has held a value <= 0 (a policy-gradient
    loss, say) is judged for non-finite values only.
    """

    indicator = "loss_divergence"
    summary = (
        "The training loss rose far above where it started, or became NaN/inf: the "
        "optimisation is diverging (learning rate too large, bad initialisation)."
    )

    def watches(self, metric: str) -> bool:
        return metric == self.s.loss_metric

    def observe(self, step, metric, layer, value):
        if layer is not None:
            return []
        st = self.state.get("loss")
        if st is None:
            st = self.state["loss"] = {
                "first": None,
                "positive": True,
                "median": RollingMedian(self.s.divergence_window),
                "debounce": Debounce(self.s.patience),
                "window": Window(self.s.evidence_points),
            }
        st["window"].add(step, value)
        if not math.isfinite(value):
            level, smoothed = CRITICAL, value
        else:
            if st["first"] is None:
                st["first"] = value
            if value <= 0:
                st["positive"] = False
            smoothed = st["median"].add(value)
            level = 0
            first = st["first"]
            if st["positive"] and first > 0:
                ratio = smoothed / first
                if ratio >= self.s.divergence_critical:
                    level = CRITICAL
                elif ratio >= self.s.divergence_warn:
                    level = WARNING
        report = st["debounce"].update(level)
        if not report:
            return []
        first = st["first"]
        if not math.isfinite(value):
            message = f"training loss is {value} at step {step}: the run has diverged"
            threshold, rule = None, "loss is not finite"
        else:
            name = "divergence_critical" if report == CRITICAL else "divergence_warn"
            threshold = getattr(self.s, name) * first
            rule = f"median of the last divergence_window losses >= {name} * first loss"
            message = (
                f"training loss rose to {smoothed:.3g}, {smoothed / first:.1f}x its first value "
                f"{first:.3g}: the optimisation is diverging"
            )
        return [
            self.alert(
                step,
                report,
                message,
                None,
                evidence(
                    metric,
                    None,
                    st["window"],
                    threshold=threshold,
                    direction="above",
                    rule=rule,
                    settings=self.settings_of(
                        ("divergence_window", "divergence_warn", "divergence_critical", "patience")
                    ),
                    first=first,
                    smoothed=smoothed if math.isfinite(smoothed) else None,
                ),
            )
        ]
