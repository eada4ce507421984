"""The language-model collapse detectors, run online over the series the LM monitor records.

A part of :class:`~probes.lm.LMMonitor` (a mixin; its ``__init__`` sets the state used
here). After every write, the rows of the watched series (:data:`WATCHED` and the
attention entropies) are appended to the run's history and
:func:`diagnostics.lm_collapse.detect_lm_collapse` runs over it; each alert (indicator,
severity, layer, onset step) is published once, like the monitor's own collapse alerts.
"""

from __future__ import annotations

from diagnostics.collapse import Alert

__all__ = ["LM_DETECTORS", "LMAlerts", "WATCHED"]

#: The series the LM detectors read (besides ``attn/entropy_norm`` and its per-head rows).
WATCHED = {
    "lm/token_entropy/mean",
    "lm/topk_entropy",
    "lm/topk_mass",
    "rl/cov/mean",
    "rl/cov/pos_share",
}
#: The detectors ``LMMonitor(lm_collapse={name: settings})`` accepts.
LM_DETECTORS = (
    "token_entropy_collapse",
    "over_optimisation",
    "positive_covariance",
    "attention_collapse",
    "entropic_overload",
)


class LMAlerts:
    """Runs the LM detectors after each write (see the module docstring)."""

    def _emit(self, rows: list[tuple[int, str, str | None, float]]) -> None:
        super()._emit(rows)
        if not self._lm_ready or self._lm_settings is None or self.rank != 0:
            return
        new = [
            r
            for r in rows
            if r[1] in WATCHED
            or r[1] == "attn/entropy_norm"
            or r[1].startswith("attn/entropy_norm/")
        ]
        if not new:
            return
        self._lm_series.extend(new)
        step = max(r[0] for r in new)
        try:
            import pandas as pd

            from diagnostics.lm_collapse import detect_lm_collapse

            frame = pd.DataFrame(self._lm_series, columns=["step", "metric", "layer", "value"])
            found = detect_lm_collapse(frame, **self._lm_settings)
        except Exception as exc:
            self._failure(step, "lm_collapse", exc)
            return
        for a in found:
            key = (a["indicator"], a["severity"], a["layer"], a["step"])
            if key in self._lm_alerted or a["indicator"] in self._lm_off:
                continue
            self._lm_alerted.add(key)
            alert = Alert(
                step=a["step"],
                indicator=a["indicator"],
                severity=a["severity"],
                message=a["message"],
                layer=a["layer"],
                evidence=a["evidence"],
            )
            self._publish_alert(alert)
