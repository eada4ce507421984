"""Representation detectors: rank collapse (effective rank), entropy collapse (DSE, von
Neumann entropy) and saturation / dead units.

Sources: RankMe (Garrido et al. 2023) and dimensional collapse (Jing et al. 2022) for the
effective rank; Liao et al. (2023) for DSE; Glorot & Bengio (2010) for saturated units and
Lu et al. (2019) for dead ReLUs.
"""

from __future__ import annotations

from collections import deque

from diagnostics.detectors.base import _LEVELS, Alert, _Debounce, _Detector, _finite


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
