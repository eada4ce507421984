"""Attention detectors: entropy collapse in deep layers and entropic overload in early layers,
over the normalised attention entropy per layer and head (``attn/entropy_norm[/hH]``: entropy
over its causal maximum log(i + 1)).

Sources: Zhai et al. 2023 (ICML) tie training instability to attention entropy collapse
(rows concentrating on one key); Jha & Reagen 2025 (arXiv:2501.03489) find the collapse in the
deeper layers and *entropic overload* (heads stuck near uniform attention) in the earlier ones.
The papers give no cut-offs; the defaults are ours.
"""

from __future__ import annotations

import math
import re

from diagnostics.detectors.base import (
    CRITICAL,
    INFO,
    WARNING,
    Debounce,
    Detector,
    RollingMedian,
    Window,
    evidence,
    finite,
)


def natural_key(name: str) -> list:
    """Sort key that orders ``h.2`` before ``h.10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


class _AttentionDetector(Detector):
    """Shared machinery: per (layer, head) trailing medians, the share of a layer's heads that
    meet a test, the layer's place in depth order."""

    deep: bool = True

    def __init__(self, settings, context=None) -> None:
        super().__init__(settings, context)
        self.units: dict[str, dict[str | None, RollingMedian]] = {}
        self.latest: dict[str, dict[str | None, float]] = {}
        self.means: dict[str, Window] = {}
        self.debounce: dict[str, Debounce] = {}

    def watches(self, metric: str) -> bool:
        m = self.s.attention_metric
        return metric == m or metric.startswith(m + "/h")

    def _order(self) -> list[str]:
        known = [x for x in self.context.layer_order if x in self.units]
        rest = sorted((x for x in self.units if x not in known), key=natural_key)
        return known + rest if known else rest

    def _selected(self, order: list[str], fraction: float) -> list[str]:
        n = max(1, math.ceil(fraction * len(order)))
        return order[-n:] if self.deep else order[:n]

    def observe_step(self, step, rows):
        m = self.s.attention_metric
        touched = set()
        for metric, layer, value in rows:
            if layer is None or not finite(value):
                continue
            head = None if metric == m else metric[len(m) + 1 :]
            med = self.units.setdefault(layer, {}).setdefault(
                head, RollingMedian(self.s.attention_window)
            )
            self.latest.setdefault(layer, {})[head] = med.add(value)
            if head is None:
                self.means.setdefault(layer, Window(self.s.evidence_points)).add(step, value)
            touched.add(layer)
        order = self._order()
        alerts = []
        for layer in self._selected(order, self._fraction()):
            if layer not in touched:
                continue
            latest = self.latest[layer]
            heads = {h: v for h, v in latest.items() if h is not None} or latest
            hits = [h for h, v in heads.items() if self._test(v)]
            share = len(hits) / len(heads)
            level = self._level(step, share) if share >= self._head_fraction() else 0
            deb = self.debounce.setdefault(layer, Debounce(1))
            report = deb.update(level)
            if report:
                depth = f"{order.index(layer) + 1}/{len(order)}"
                alerts.append(
                    self.alert(
                        step,
                        report,
                        self._message(layer, share, None not in heads, depth),
                        layer,
                        evidence(
                            m,
                            layer,
                            self.means.get(layer, Window(1)),
                            threshold=self._threshold(),
                            direction=self.direction,
                            rule=self.rule,
                            settings=self._settings(),
                            fraction=share,
                            heads=[str(h) for h in hits if h is not None] or None,
                            depth=depth,
                        ),
                    )
                )
        return alerts


class AttentionCollapse(_AttentionDetector):
    """Attention entropy collapse in deep layers: in the last ``attention_deep_fraction``
    (0.5) of the layers in depth order, at least ``attention_head_fraction`` (0.5) of a layer's
    heads have a smoothed normalised entropy below ``attention_threshold`` (0.1: a tenth of the
    possible entropy); with only the layer mean, when that mean is. *warning*, *critical* when
    every head of the layer is below the threshold."""

    indicator = "attention_collapse"
    summary = (
        "Attention heads in deep layers attend to a single key (entropy near zero), the "
        "instability of Zhai et al. 2023 and Jha & Reagen 2025."
    )
    deep = True
    direction = "below"
    rule = (
        "share of heads with normalised entropy < attention_threshold >= "
        "attention_head_fraction, in the deepest attention_deep_fraction of the layers"
    )

    def _fraction(self):
        return self.s.attention_deep_fraction

    def _head_fraction(self):
        return self.s.attention_head_fraction

    def _test(self, v):
        return v < self.s.attention_threshold

    def _threshold(self):
        return self.s.attention_threshold

    def _level(self, step, share):
        return CRITICAL if share >= 1.0 else WARNING

    def _settings(self):
        return self.settings_of(
            (
                "attention_threshold",
                "attention_head_fraction",
                "attention_deep_fraction",
                "attention_window",
            )
        )

    def _message(self, layer, share, has_heads, depth):
        what = f"{share:.0%} of its heads have" if has_heads else "its mean has"
        return (
            f"attention entropy collapse in layer {layer} (depth {depth}): {what} normalised "
            f"entropy below {self.s.attention_threshold:g}"
        )


class EntropicOverload(_AttentionDetector):
    """Entropic overload in early layers: in the first ``overload_early_fraction`` (0.5) of the
    layers, at a step ``>= overload_warmup_steps`` (1000; attention is near uniform at
    initialisation, overload means it *stays* there), at least ``overload_head_fraction`` (0.5)
    of a layer's heads have a smoothed normalised entropy above ``overload_threshold`` (0.75).
    *info*: heads that attend uniformly carry little information, an inefficiency worth
    knowing, not a failure (a model whose task needs no attention there, as the suite's
    pretraining grammar, trains well with them)."""

    indicator = "entropic_overload"
    summary = (
        "Many early-layer heads stay at near-uniform attention long after initialisation: "
        "entropic overload (Jha & Reagen 2025)."
    )
    deep = False
    direction = "above"
    rule = (
        "share of heads with normalised entropy > overload_threshold >= overload_head_fraction, "
        "in the first overload_early_fraction of the layers, after overload_warmup_steps"
    )

    def _fraction(self):
        return self.s.overload_early_fraction

    def _head_fraction(self):
        return self.s.overload_head_fraction

    def _test(self, v):
        return v > self.s.overload_threshold

    def _threshold(self):
        return self.s.overload_threshold

    def _level(self, step, share):
        return INFO if step >= self.s.overload_warmup_steps else 0

    def _settings(self):
        return self.settings_of(
            (
                "overload_threshold",
                "overload_head_fraction",
                "overload_early_fraction",
                "overload_warmup_steps",
                "attention_window",
            )
        )

    def _message(self, layer, share, has_heads, depth):
        what = f"{share:.0%} of its heads stay" if has_heads else "its mean stays"
        return (
            f"entropic overload in layer {layer} (depth {depth}): {what} above "
            f"{self.s.overload_threshold:g} of the maximal attention entropy after "
            f"{self.s.overload_warmup_steps} steps"
        )
