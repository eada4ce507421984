"""Representation detectors: rank collapse (effective rank), entropy collapse (DSE, von Neumann
entropy) and saturation / dead units.

Sources: RankMe (Garrido et al. 2023) and dimensional collapse (Jing et al. 2022) use the
effective rank of representations as the collapse signal; neural collapse (Papyan et al. 2020)
is why a classifier's layers *should* lose rank toward the number of classes, so the rank a
layer should keep is judged against that, not against its width at initialisation. Liao et al.
(2023) for DSE; Glorot & Bengio (2010) for saturated units, Lu et al. (2019) for dead ReLUs.
"""

from __future__ import annotations

import math

from diagnostics.detectors.base import (
    CRITICAL,
    INFO,
    WARNING,
    Alert,
    Debounce,
    Detector,
    RollingMedian,
    Window,
    evidence,
    finite,
)


class _FallFromReference(Detector):
    """Shared rule: a series falls to a fraction of a reference (its running peak, capped by
    what the layer should keep when the context knows the classes), per series, debounced over
    ``collapse_patience`` records (a collapse persists).

    A collapse is the loss of *learned* structure: with the labels known
    (``context.label_entropy``), the peak is taken from the first record at which the training
    loss is ``collapse_learning_drop`` (10%) below the chance-level cross-entropy H(Y) on.
    Before that a representation is still its initialisation, and early optimisation may
    concentrate it for a while and let it recover (the suite's healthy SGD run dips to one
    direction for 30 steps while its loss sits at chance). Without labels, from the start."""

    def __init__(self, settings, context=None) -> None:
        super().__init__(settings, context)
        self.loss = RollingMedian(5)
        self.learning = self.context.label_entropy is None or self.context.label_entropy <= 0

    def _reference(self, peak: float) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def _score(self, value: float, ref: float) -> float:
        return value / ref

    def _threshold(self, fraction: float, ref: float) -> float:
        return fraction * ref

    def _levels(self) -> tuple[float, float, float]:  # pragma: no cover - interface
        """(warning fraction, critical fraction, minimum reference)."""
        raise NotImplementedError

    def watches(self, metric: str) -> bool:
        return metric == self.s.loss_metric or self._watches(metric)

    per_row = True  # observe_step only puts the loss first

    def observe_step(self, step, rows):
        rows = sorted(rows, key=lambda r: r[0] != self.s.loss_metric)  # the loss first
        return super().observe_step(step, rows)

    def observe(self, step, metric, layer, value):
        if not finite(value):
            return []
        if metric == self.s.loss_metric:
            if layer is None and not self.learning:
                drop = self.s.collapse_learning_drop
                smoothed = self.loss.add(value)
                self.learning = smoothed <= (1 - drop) * self.context.label_entropy
            return []
        key = (metric, layer)
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = {
                "peak": None,
                "peak_step": None,
                "debounce": Debounce(self.s.collapse_patience),
                "window": Window(self.s.evidence_points),
            }
        st["window"].add(step, value)
        if not self.learning:
            st["debounce"].update(0)
            return []
        if st["peak"] is None or value > st["peak"]:
            st["peak"], st["peak_step"] = value, step
        warn, crit, min_ref = self._levels()
        ref = self._reference(st["peak"])
        level = 0
        if ref >= min_ref:
            score = self._score(value, ref)
            level = CRITICAL if score <= crit else WARNING if score <= warn else 0
        report = st["debounce"].update(level)
        if not report:
            return []
        fraction = crit if report == CRITICAL else warn
        threshold = self._threshold(fraction, ref)
        return [
            self.alert(
                step,
                report,
                self._message(metric, layer, value, st["peak"], st["peak_step"], ref, threshold),
                layer,
                evidence(
                    metric,
                    layer,
                    st["window"],
                    threshold=threshold,
                    direction="below",
                    rule=self._rule(report),
                    settings=self._settings(),
                    peak=st["peak"],
                    peak_step=st["peak_step"],
                    reference=ref,
                    n_classes=self.context.n_classes,
                ),
            )
        ]


class RankCollapse(_FallFromReference):
    """The effective rank of a layer falls toward 1, below what the layer should keep.

    The reference ``ref`` is the rank a layer should keep: with known classes
    (``context.n_classes = C``) ``min(peak, C - 1)`` (a classifier's class means span C - 1
    dimensions at neural collapse, so falling from the width at initialisation toward C - 1 is
    learning, not collapse); without classes, the layer's running peak. With ``score = (erank -
    1) / (ref - 1)``: *warning* at ``score <= rank_warn`` (0.5), *critical* at ``rank_critical``
    (0.1); without classes the stricter ``rank_warn_unsupervised`` (0.1) and
    ``rank_critical_unsupervised`` (0.02), since a fall from the peak is then all there is to
    go by. Layers with ``ref < rank_min_peak`` are not judged.
    """

    indicator = "rank_collapse"
    summary = (
        "The effective rank of a layer fell far below the rank it should keep (n_classes - 1 "
        "for a classifier, else its peak): RankMe, Garrido et al. 2023; Jing et al. 2022."
    )

    def _watches(self, metric: str) -> bool:
        return metric == self.s.rank_metric

    def _supervised(self) -> bool:
        return self.context.n_classes is not None

    def _levels(self):
        if self._supervised():
            return self.s.rank_warn, self.s.rank_critical, self.s.rank_min_peak
        return (
            self.s.rank_warn_unsupervised,
            self.s.rank_critical_unsupervised,
            self.s.rank_min_peak,
        )

    def _reference(self, peak: float) -> float:
        if self._supervised():
            return min(peak, max(self.context.n_classes - 1, 1))
        return peak

    def _score(self, value, ref):
        return (value - 1.0) / (ref - 1.0)

    def _threshold(self, fraction, ref):
        return 1.0 + fraction * (ref - 1.0)

    def _rule(self, level: int) -> str:
        ref = "min(peak, n_classes - 1)" if self._supervised() else "peak"
        suffix = "" if self._supervised() else "_unsupervised"
        name = ("rank_critical" if level == CRITICAL else "rank_warn") + suffix
        return f"erank - 1 <= {name} * (ref - 1), ref = {ref}"

    def _settings(self):
        return self.settings_of(
            (
                "rank_warn",
                "rank_critical",
                "rank_warn_unsupervised",
                "rank_critical_unsupervised",
                "rank_min_peak",
                "collapse_patience",
                "collapse_learning_drop",
            )
        )

    def _message(self, metric, layer, value, peak, peak_step, ref, threshold):
        keep = (
            f"the {ref:.3g} it should keep with {self.context.n_classes} classes"
            if self._supervised()
            else f"its peak {peak:.3g} at step {peak_step}"
        )
        return (
            f"effective rank of {layer or 'the model'} fell to {value:.3g}, below "
            f"{threshold:.3g} (against {keep})"
        )


class EntropyCollapse(_FallFromReference):
    """Representation entropy (DSE, von Neumann) falls to a fraction of its reference.

    The reference is the running peak, capped at ``log(C - 1)`` nats with known classes
    (``C >= 3``: the entropy of C - 1 equally used directions, what a collapsed classifier
    keeps). *warning* at ``entropy_warn`` (0.25) of it, *critical* at ``entropy_critical``
    (0.05). A classifier's output layer halves its covariance entropy while it learns (the
    healthy CNN of the detector suite: 1.78 -> 0.83 nats), hence the low fractions; a collapse
    (diverging training, dead units) takes the entropy to about 0. DSE rises while a network
    learns (Liao et al. 2023).
    """

    indicator = "entropy_collapse"
    summary = (
        "Representation entropy (DSE, von Neumann) fell to a small fraction of what the layer "
        "should keep: Liao et al. 2023."
    )

    def _watches(self, metric: str) -> bool:
        return metric in self.s.entropy_metrics

    def _supervised(self) -> bool:
        return self.context.n_classes is not None

    def _levels(self):
        return self.s.entropy_warn, self.s.entropy_critical, self.s.entropy_min_peak

    def _reference(self, peak: float) -> float:
        c = self.context.n_classes
        if c is not None and c >= 3:
            return min(peak, math.log(c - 1))
        return peak

    def _rule(self, level: int) -> str:
        name = "entropy_critical" if level == CRITICAL else "entropy_warn"
        ref = "min(peak, log(n_classes - 1))" if self._supervised() else "peak"
        return f"value <= {name} * ref, ref = {ref}"

    def _settings(self):
        return self.settings_of(
            (
                "entropy_warn",
                "entropy_critical",
                "entropy_min_peak",
                "collapse_patience",
                "collapse_learning_drop",
            )
        )

    def _message(self, metric, layer, value, peak, peak_step, ref, threshold):
        return (
            f"{metric} of {layer or 'the model'} fell to {value:.3g} nats, {value / ref:.0%} of "
            f"its reference {ref:.3g} (peak {peak:.3g} at step {peak_step}; threshold "
            f"{threshold:.3g})"
        )


class Saturation(Detector):
    """Bounded activations at their bounds (``act/saturated_frac``) or ReLU units that never
    fire (``act/dead_frac``): *warning* at ``saturation_warn`` (0.5) of the units, *critical*
    at ``saturation_critical`` (0.9).

    Saturated tanh/sigmoid units pass almost no gradient, which stops a network that has not
    learned yet; a network that has saturates its late layers as its features become
    confident, which is how tanh networks compress (Saxe et al. 2018): then saturation is only
    *info*. "Has learned": the training loss is at most ``saturation_learned_loss`` (0.5) of
    the chance-level cross-entropy H(Y) (``context.label_entropy``, from the probe labels), or
    of the first recorded loss when the labels are unknown. Dead ReLUs do not come back: once
    the network has learned they are judged one level lower (a warning becomes info, a
    critical a warning), since the network learns with the units left (large learning rates
    kill a share of units in healthy runs, Lu et al. 2019), but the capacity is lost.
    """

    indicator = "saturation"
    summary = (
        "A large share of a layer's units saturated (tanh/sigmoid at their bounds) before the "
        "network learned, or dead (ReLU never firing): Glorot & Bengio 2010; Lu et al. 2019."
    )

    def __init__(self, settings, context=None) -> None:
        super().__init__(settings, context)
        self.first_loss: float | None = None
        self.loss = RollingMedian(5)
        self.smoothed_loss: float | None = None

    def watches(self, metric: str) -> bool:
        return metric in self.s.saturation_metrics or metric == self.s.loss_metric

    def _loss_reference(self) -> float | None:
        """Chance-level cross-entropy when the labels are known, else the first loss."""
        h = self.context.label_entropy
        return h if h is not None and h > 0 else self.first_loss

    def _learned(self) -> bool:
        ref, now = self._loss_reference(), self.smoothed_loss
        return (
            ref is not None
            and now is not None
            and ref > 0
            and now <= self.s.saturation_learned_loss * ref
        )

    per_row = True  # observe_step only puts the loss first

    def observe_step(self, step, rows):
        rows = sorted(rows, key=lambda r: r[0] != self.s.loss_metric)  # the loss first
        return super().observe_step(step, rows)

    def observe(self, step, metric, layer, value) -> list[Alert]:
        if not finite(value):
            return []
        if metric == self.s.loss_metric:
            if layer is None:
                if self.first_loss is None:
                    self.first_loss = value
                self.smoothed_loss = self.loss.add(value)
            return []
        key = (metric, layer)
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = {
                "debounce": Debounce(self.s.patience),
                "window": Window(self.s.evidence_points),
            }
        st["window"].add(step, value)
        level = (
            CRITICAL
            if value >= self.s.saturation_critical
            else WARNING
            if value >= self.s.saturation_warn
            else 0
        )
        dead = metric.endswith("dead_frac")
        learned = self._learned()
        if learned and level:
            # dead units are lost capacity (they do not come back): one level lower, not
            # info; saturated units of a network that learned are confident ones: info
            level = max(INFO, level - 1) if dead else INFO
        report = st["debounce"].update(level)
        if not report:
            return []
        name = "saturation_critical" if value >= self.s.saturation_critical else "saturation_warn"
        threshold = getattr(self.s, name)
        what = "dead units" if dead else "saturated activations"
        message = f"{value:.0%} {what} in {layer or 'the model'} (threshold {threshold:.0%})"
        if learned:
            message += (
                f", after the training loss fell to {self.smoothed_loss:.3g} (reference "
                f"{self._loss_reference():.3g}): "
                + (
                    "capacity lost, but the network learns with the units left"
                    if dead
                    else "confident units, not a network that cannot learn"
                )
            )
        return [
            self.alert(
                step,
                report,
                message,
                layer,
                evidence(
                    metric,
                    layer,
                    st["window"],
                    threshold=threshold,
                    direction="above",
                    rule=f"value >= {name}; "
                    + ("one level lower" if dead else "info")
                    + " once loss <= saturation_learned_loss * H(Y) (or first loss)",
                    settings=self.settings_of(
                        (
                            "saturation_warn",
                            "saturation_critical",
                            "saturation_learned_loss",
                            "patience",
                        )
                    ),
                    loss_first=self.first_loss,
                    loss_reference=self._loss_reference(),
                    loss_now=self.smoothed_loss,
                ),
            )
        ]
