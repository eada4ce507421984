"""The thresholds of every detector in one frozen dataclass with documented defaults
(:class:`CollapseSettings`), grouped by indicator, and its construction from a plain mapping.

The defaults are heuristics chosen on the labelled suite of ``benchmarks/detectors.py`` (real
training runs, each labelled with the indicators that must and must not fire); the papers each
detector cites motivate the signals, not these numbers unless the docstring says so.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: settings that are fractions in [0, 1]
_FRACTIONS = (
    "rank_warn",
    "rank_critical",
    "rank_warn_unsupervised",
    "rank_critical_unsupervised",
    "entropy_warn",
    "entropy_critical",
    "saturation_warn",
    "saturation_critical",
    "saturation_learned_loss",
    "collapse_learning_drop",
    "memorisation_loss_drop",
    "compression_drop",
    "compression_min_ity",
    "compression_ity_hold",
    "token_entropy_early_drop",
    "token_entropy_floor",
    "overopt_entropy_drop",
    "overopt_mass_drop",
    "cov_min_fraction",
    "cov_share_threshold",
    "cov_entropy_drop",
    "attention_threshold",
    "attention_head_fraction",
    "attention_deep_fraction",
    "overload_threshold",
    "overload_head_fraction",
    "overload_early_fraction",
)
#: fractions where 0 would make the rule meaningless (any fall fires, or nothing ever can)
_POSITIVE = (
    "compression_drop",
    "token_entropy_early_drop",
    "overopt_entropy_drop",
    "overopt_mass_drop",
    "cov_min_fraction",
    "attention_threshold",
    "attention_head_fraction",
    "attention_deep_fraction",
    "overload_head_fraction",
    "overload_early_fraction",
)
#: settings that are integers >= 1
_COUNTS = (
    "patience",
    "collapse_patience",
    "evidence_points",
    "lm_window",
    "lm_baseline_points",
    "divergence_window",
    "cov_window",
    "attention_window",
)
#: (lower, upper) pairs: lower must not exceed upper
_ORDERED = (
    ("rank_critical", "rank_warn"),
    ("rank_critical_unsupervised", "rank_warn_unsupervised"),
    ("entropy_critical", "entropy_warn"),
    ("saturation_warn", "saturation_critical"),
    ("divergence_warn", "divergence_critical"),
)


@dataclass(frozen=True)
class CollapseSettings:
    """Thresholds of the detectors (each rule is described in its detector's docstring)."""

    # ----------------------------------------------------------------- shared
    #: consecutive records a condition must hold before it is reported
    patience: int = 2
    #: points of the series that fired kept in an alert's evidence
    evidence_points: int = 40
    #: the training-loss series (memorisation, loss divergence)
    loss_metric: str = "train/loss"

    # ----------------------------------------------- rank_collapse, entropy_collapse
    #: consecutive records a rank or entropy collapse must hold
    collapse_patience: int = 3
    #: with the labels known, a layer's reference is taken once the training loss is this
    #: fraction below the chance-level cross-entropy H(Y): a collapse is the loss of learned
    #: structure, and before learning a representation is still its initialisation
    collapse_learning_drop: float = 0.1
    rank_metric: str = "repr/effective_rank"
    #: with known classes: warning when erank - 1 <= rank_warn * (ref - 1), where ref is the
    #: rank the layer should keep, min(its peak, n_classes - 1)
    rank_warn: float = 0.5
    #: ... and critical at rank_critical
    rank_critical: float = 0.1
    #: without classes (ref = the layer's peak): warning and critical at these fractions
    rank_warn_unsupervised: float = 0.1
    rank_critical_unsupervised: float = 0.02
    #: layers whose reference rank is below this are not judged (nothing to lose)
    rank_min_peak: float = 2.0

    # -------------------------------------------------------- entropy_collapse
    entropy_metrics: tuple[str, ...] = ("repr/dse", "repr/von_neumann")
    #: warning when entropy <= entropy_warn * ref, ref = the running peak, capped at
    #: log(n_classes - 1) with known classes; critical at entropy_critical
    entropy_warn: float = 0.25
    entropy_critical: float = 0.05
    #: entropies whose reference stayed below this (nats) are not judged
    entropy_min_peak: float = 1e-3

    # -------------------------------------------------------------- saturation
    saturation_metrics: tuple[str, ...] = ("act/saturated_frac", "act/dead_frac")
    saturation_warn: float = 0.5
    saturation_critical: float = 0.9
    #: saturated (not dead) units are only info once the training loss is at or below this
    #: fraction of the chance-level cross-entropy H(Y) (of the first loss without labels):
    #: the network has learned, its units are confident
    saturation_learned_loss: float = 0.5

    # ------------------------------------------------------------ memorisation
    dsmi_metric: str = "repr/dsmi_y"
    #: DSMI records spanned by the memorisation window
    memorisation_window: int = 5
    #: relative fall of the loss over the window that counts as "still improving"
    memorisation_loss_drop: float = 0.2
    #: relative DSMI rise below which DSMI "stagnates"
    memorisation_dsmi_rise: float = 0.05
    #: floor (nats) of the DSMI scale in the relative rise
    memorisation_dsmi_floor: float = 0.01
    #: relative DSMI gain since the layer's first record above which it has "learned"
    memorisation_learned_gain: float = 0.25

    # ------------------------------------------------------- compression_onset
    #: prefix of the information-plane series (``{prefix}{estimator}/I_XT``)
    info_plane_prefix: str = "info_plane/"
    #: relative fall of I(X;T) below its peak (since the layer predicts) that marks compression
    compression_drop: float = 0.1
    #: a layer "predicts" once I(T;Y) >= compression_min_ity * the label information (H(Y)
    #: when the context has it, else the largest I(T;Y) of any layer so far)
    compression_min_ity: float = 0.5
    #: I(T;Y) must stay within this (relative) of its running maximum while I(X;T) falls
    compression_ity_hold: float = 0.05
    #: skip the model's output layers (context.output_layers): a classifier's output
    #: saturates as its predictions become confident whatever the hidden activations do
    compression_skip_output: bool = True

    # --------------------------------------------------------- loss_divergence
    #: rolling-median window (records) of the loss
    divergence_window: int = 5
    #: warning when the smoothed loss >= divergence_warn * its first recorded value
    divergence_warn: float = 2.0
    #: critical at divergence_critical times the first value, or when the loss is not finite
    divergence_critical: float = 10.0

    # ------------------------------------------------------------ language models
    #: trailing rolling-median window (records) of the LM series
    lm_window: int = 5
    #: the initial value of an LM series is the median of this many first records
    lm_baseline_points: int = 3
    token_entropy_metric: str = "lm/token_entropy/mean"
    #: series whose presence marks RL fine-tuning (token-entropy collapse is judged from the
    #: first step that records one of them: entropy falling in pretraining is learning)
    rl_metrics: tuple[str, ...] = ("rl/reward", "rl/cov/mean", "rl/cov/pos_share")
    #: warning: smoothed entropy <= (1 - early_drop) * initial within early_steps steps
    #: (Cui et al. 2025 see 73% of it gone within the first 200 steps)
    token_entropy_early_steps: int = 200
    token_entropy_early_drop: float = 0.5
    #: critical: smoothed entropy <= token_entropy_floor * initial at any step
    token_entropy_floor: float = 0.1
    topk_entropy_metric: str = "lm/topk_entropy"
    topk_mass_metric: str = "lm/topk_mass"
    #: over-optimisation: top-k entropy down by this (relative) ...
    overopt_entropy_drop: float = 0.2
    #: ... and top-k mass down by this (both: warning; entropy only: info)
    overopt_mass_drop: float = 0.05
    cov_mean_metric: str = "rl/cov/mean"
    cov_share_metric: str = "rl/cov/pos_share"
    #: positive covariance: over the last cov_window records the mean covariance was
    #: positive at >= cov_min_fraction of them and the positive share averaged above
    #: cov_share_threshold ...
    cov_window: int = 20
    cov_min_fraction: float = 0.9
    cov_share_threshold: float = 0.5
    #: ... a warning when token entropy fell by >= cov_entropy_drop (relative) over that
    #: window and is below its initial value (the covariance is driving it down), else info
    cov_entropy_drop: float = 0.1
    attention_metric: str = "attn/entropy_norm"
    attention_window: int = 3
    #: attention collapse: in the last attention_deep_fraction of the layers, at least
    #: attention_head_fraction of a layer's heads below attention_threshold of the causal
    #: maximum entropy (warning; critical when every head is)
    attention_threshold: float = 0.1
    attention_head_fraction: float = 0.5
    attention_deep_fraction: float = 0.5
    #: entropic overload (info): in the first overload_early_fraction of the layers, at least
    #: overload_head_fraction of a layer's heads above overload_threshold after
    #: overload_warmup_steps steps
    overload_threshold: float = 0.75
    overload_head_fraction: float = 0.5
    overload_early_fraction: float = 0.5
    overload_warmup_steps: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _COUNTS:
                if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                    raise ValueError(f"{f.name}: expected an integer >= 1, got {v!r}")
            elif f.name in _FRACTIONS:
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
                    raise ValueError(f"{f.name}: expected a number in [0, 1], got {v!r}")
                if f.name in _POSITIVE and v == 0:
                    raise ValueError(f"{f.name}: expected a number in (0, 1], got {v!r}")
            elif f.type in ("float", "int") and (
                isinstance(v, bool) or not isinstance(v, numbers.Real) or v < 0
            ):
                raise ValueError(f"{f.name}: expected a number >= 0, got {v!r}")
        if self.memorisation_window < 2:
            raise ValueError(
                f"memorisation_window: expected an integer >= 2, got {self.memorisation_window!r}"
            )
        for low, high in _ORDERED:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low}: expected <= {high} ({getattr(self, high)}), got {getattr(self, low)}"
                )


def settings_from_mapping(values: Mapping[str, Any]) -> CollapseSettings:
    """Build settings from a dict (unknown keys raise, naming the known ones)."""
    known = {f.name for f in fields(CollapseSettings)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(
            f"collapse settings: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    values = {
        k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
    }  # JSON round trip
    return CollapseSettings(**values)
