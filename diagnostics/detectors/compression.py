"""Compression-onset detector: the information plane's I(X;T) of a layer falls from its peak
while I(T;Y) holds (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018).
"""

from __future__ import annotations

from collections import deque

from diagnostics.detectors.base import Alert, _Debounce, _Detector, _finite


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
