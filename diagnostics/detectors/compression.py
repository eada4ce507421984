"""Compression-onset detector: after a layer has come to predict the labels, its I(X;T) falls
while I(T;Y) holds: the compression phase of Shwartz-Ziv & Tishby (2017), which Saxe et al.
(2018) show depends on the activation (tanh compresses, ReLU does not) and the estimator."""

from __future__ import annotations

from diagnostics.detectors.base import INFO, Debounce, Detector, Window, evidence, finite


class CompressionOnset(Detector):
    """Per layer and estimator (``info_plane/{estimator}/I_XT`` and ``.../I_TY``):

    1. the layer *predicts* once I(T;Y) >= ``compression_min_ity`` (0.5) of the label
       information: H(Y) from the context, else the largest I(T;Y) recorded so far by any
       layer for that estimator (the first layers keep almost all of it). Until then nothing
       counts, which ignores the initial transient, where I(T;Y) is near 0 and any fall of
       I(X;T) is noise;
    2. the peak of I(X;T) is taken over the records where the layer predicts;
    3. compression: I(X;T) <= (1 - ``compression_drop``) x that peak (default 10%: the ReLU
       layers of the 12-bit task drift by up to 5% without compressing, the tanh layers fall by
       30-70%) while I(T;Y) stays within ``compression_ity_hold`` (5%) of its running maximum,
       on ``patience`` consecutive records.

    The model's output layers (``context.output_layers``) are skipped unless
    ``compression_skip_output=False``: a classifier's output saturates as its predictions
    become confident, whatever its hidden activations, so its fall says nothing about the
    representation (Saxe et al. 2018 see the sigmoidal output layer compress in both networks).
    *info*: a phase of training, not a problem.
    """

    indicator = "compression_onset"
    summary = (
        "A layer's I(X;T) fell from its peak while I(T;Y) held: the compression phase of the "
        "information bottleneck (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018)."
    )

    def __init__(self, settings, context=None) -> None:
        super().__init__(settings, context)
        self.label_info: dict[str, float] = {}  # estimator -> largest I(T;Y) seen

    def watches(self, metric: str) -> bool:
        p = self.s.info_plane_prefix
        return metric.startswith(p) and (metric.endswith("/I_XT") or metric.endswith("/I_TY"))

    def observe_step(self, step, rows):
        pairs: dict[tuple[str, str | None], dict[str, float]] = {}
        for metric, layer, value in rows:
            estimator = metric[len(self.s.info_plane_prefix) : -len("/I_XT")]
            pairs.setdefault((estimator, layer), {})[metric[-4:]] = value
        for (estimator, _), got in pairs.items():
            ity = got.get("I_TY")
            if finite(ity):
                self.label_info[estimator] = max(self.label_info.get(estimator, 0.0), ity)
        skip = set(self.context.output_layers) if self.s.compression_skip_output else set()
        alerts = []
        for key, got in pairs.items():
            ixt, ity = got.get("I_XT"), got.get("I_TY")
            if key[1] not in skip and finite(ixt) and finite(ity):
                alerts.extend(self._judge(step, key, ixt, ity))
        return alerts

    def _reference_ity(self, estimator: str) -> float:
        h = self.context.label_entropy
        return h if h is not None and h > 0 else self.label_info.get(estimator, 0.0)

    def _judge(self, step, key, ixt, ity):
        estimator, layer = key
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = {
                "peak": None,
                "peak_step": None,
                "ity_max": ity,
                "debounce": Debounce(self.s.patience),
                "xt": Window(self.s.evidence_points),
                "ty": Window(self.s.evidence_points),
            }
        st["xt"].add(step, ixt)
        st["ty"].add(step, ity)
        st["ity_max"] = max(st["ity_max"], ity)
        ref = self._reference_ity(estimator)
        predicts = ref > 0 and ity >= self.s.compression_min_ity * ref
        if predicts and (st["peak"] is None or ixt > st["peak"]):
            st["peak"], st["peak_step"] = ixt, step
        peak = st["peak"]
        drop = self.s.compression_drop
        hit = (
            predicts
            and peak is not None
            and peak > 0
            and ixt <= (1 - drop) * peak
            and ity >= (1 - self.s.compression_ity_hold) * st["ity_max"]
        )
        if not st["debounce"].update(INFO if hit else 0):
            return []
        p = self.s.info_plane_prefix
        return [
            self.alert(
                step,
                INFO,
                f"compression phase: I(X;T) of {layer or 'the model'} ({estimator}) fell to "
                f"{ixt:.3g} from its peak {peak:.3g} at step {st['peak_step']} while I(T;Y) held "
                f"at {ity:.3g} nats (its maximum {st['ity_max']:.3g})",
                layer,
                evidence(
                    f"{p}{estimator}/I_XT",
                    layer,
                    st["xt"],
                    threshold=(1 - drop) * peak,
                    direction="below",
                    rule=(
                        "I_XT <= (1 - compression_drop) * peak since the layer predicts, and "
                        "I_TY >= (1 - compression_ity_hold) * max I_TY"
                    ),
                    settings=self.settings_of(
                        (
                            "compression_drop",
                            "compression_min_ity",
                            "compression_ity_hold",
                            "compression_skip_output",
                            "patience",
                        )
                    ),
                    related={f"{p}{estimator}/I_TY": st["ty"]},
                    estimator=estimator,
                    peak=peak,
                    peak_step=st["peak_step"],
                    I_TY_max=st["ity_max"],
                    label_information=self._reference_ity(estimator),
                ),
            )
        ]
