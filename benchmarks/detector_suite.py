"""The labelled detector suite: runs of real training, each labelled with the indicators that
must fire (on which layers, from which step on) and those that must not, and the evaluation of
the detectors (and of the plain rules a user would write by hand) against the labels.

The runs are the shipped sample runs plus runs that ``detector_runs.record`` trains here with the probes
(``probes.Monitor`` / ``probes.lm.LMMonitor``), each a few seconds to a minute on a CPU:

======================  =====================================================================
healthy-tanh            digits MLP with tanh units, true labels (healthy)
healthy-fast            digits MLP with Adam at 1e-2, 3x the sample run's rate (healthy)
healthy-sgd             digits MLP trained by SGD with momentum (healthy)
healthy-cnn             a small CNN on the 8x8 digits, true labels (healthy)
lm-pretrain-long        tiny GPT-2 pretrained for 1200 steps, past the overload warm-up (healthy)
divergent-lr            digits MLP trained well, then the learning rate raised 300x at step 100
dead-relu               digits MLP whose biases start at -3: nearly every ReLU is dead
saturated-tanh          digits MLP with tanh units and weights 8x the default: saturated
simsiam-collapse        a Siamese encoder trained to agree on two views of a digit with neither
                        stop-gradient nor predictor (SimSiam's ablation): complete collapse
attention-forced        tiny GPT-2 whose last layer's query/key weights grow 8% a step from step
                        40 on: its heads attend to one key
uniform-early-attention tiny GPT-2 whose first layer's queries are held at 0: its heads attend
                        uniformly for the whole run (entropic overload once past the warm-up)
dpo-overoptimisation    tiny GPT-2 trained with DPO far past its reference (beta 0.05): the
                        likelihood of both answers falls and probability leaves the top-k
======================  =====================================================================

Nothing here is a hand-drawn curve: every series comes from a network trained on this CPU.
``small=True`` records shorter versions (the tests use them); the labels are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from detector_runs import RECORDERS, record  # noqa: F401  (the suite's recorders)

from diagnostics import open_run, schema
from diagnostics.detectors import CollapseSettings, Context, detect_collapse

RANK = schema.SEVERITY_RANK


# =============================================================================== labels


@dataclass(frozen=True)
class Expect:
    """An indicator that must fire: from step ``onset`` on (an alert before it is a false
    alarm), at ``severity`` or worse, on each of ``layers`` (any layer when empty)."""

    indicator: str
    onset: int = 0
    severity: str = "warning"
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    story: str
    #: where the run comes from: a shipped sample run's folder name, or "recorded"
    source: str
    fire: tuple[Expect, ...] = ()
    #: indicators that may fire too (consequences of the labelled pathology)
    allow: tuple[str, ...] = ()
    #: indicators that must not fire at any severity, info included
    forbid: tuple[str, ...] = ()
    #: context for runs recorded before the probes stored one (the sample runs do)
    context: Context = field(default_factory=Context)

    @property
    def healthy(self) -> bool:
        return not self.fire or all(e.severity == "info" for e in self.fire)


CASES: tuple[Case, ...] = (
    # ------------------------------------------------------------ shipped sample runs
    Case("digits-mlp", "digits MLP, true labels: healthy", "digits-mlp",
         context=Context(n_classes=10)),
    Case("digits-mlp-random-labels", "digits MLP memorising random labels",
         "digits-mlp-random-labels", fire=(Expect("memorisation", 0),),
         context=Context(n_classes=10)),
    Case("information-plane-tanh", "12-bit task, tanh: layers 4 and 5 compress",
         "information-plane-tanh",
         fire=(Expect("compression_onset", 19, "info", ("layer4", "layer5")),),
         context=Context(n_classes=2, output_layers=("output",))),
    Case("information-plane-relu", "12-bit task, ReLU: no compression", "information-plane-relu",
         forbid=("compression_onset",), context=Context(n_classes=2, output_layers=("output",))),
    Case("lm-pretrain", "tiny GPT-2 pretraining: healthy", "lm-pretrain"),
    Case("lm-rl-baseline", "REINFORCE without intervention: token entropy collapses",
         "lm-rl-baseline", fire=(Expect("token_entropy_collapse", 0), Expect("positive_covariance", 0)),
         allow=("over_optimisation",)),
    Case("lm-rl-clipcov", "REINFORCE with Clip-Cov: entropy held up", "lm-rl-clipcov"),
    # ----------------------------------------------------------------- recorded here
    Case("healthy-tanh", "digits MLP, tanh units, true labels: healthy", "recorded"),
    Case("healthy-fast", "digits MLP, Adam at 1e-2: healthy", "recorded"),
    Case("healthy-sgd", "digits MLP, SGD with momentum: healthy", "recorded"),
    Case("healthy-cnn", "digits CNN, true labels: healthy", "recorded"),
    Case("lm-pretrain-long", "tiny GPT-2 pretraining past the warm-up: healthy", "recorded"),
    Case("divergent-lr", "learning rate raised 300x at step 100: the loss diverges and every "
         "ReLU dies", "recorded",
         fire=(Expect("loss_divergence", 100), Expect("rank_collapse", 100, "critical"),
               Expect("entropy_collapse", 100, "critical"), Expect("saturation", 100))),
    Case("dead-relu", "biases start at -3: dead ReLUs", "recorded",
         fire=(Expect("saturation", 0, "critical"),), allow=("rank_collapse", "entropy_collapse")),
    Case("saturated-tanh", "tanh with 8x weights: saturated", "recorded",
         fire=(Expect("saturation", 0),), allow=("rank_collapse", "entropy_collapse")),
    Case("simsiam-collapse", "Siamese encoder without stop-gradient: dimensional collapse",
         "recorded", fire=(Expect("rank_collapse", 0, "warning", ("emb",)),),
         allow=("entropy_collapse", "saturation")),
    Case("attention-forced", "last layer's attention forced onto one key from step 40",
         "recorded", fire=(Expect("attention_collapse", 40),)),
    Case("uniform-early-attention", "first layer attends uniformly: entropic overload",
         "recorded", fire=(Expect("entropic_overload", 1000, "info"),)),
    Case("dpo-overoptimisation", "DPO far past its reference: likelihood over-optimisation",
         "recorded", fire=(Expect("over_optimisation", 0),)),
)  # fmt: skip


# ============================================================================ evaluation


@dataclass
class Outcome:
    case: str
    healthy: bool
    #: indicator -> (fired as labelled, delay in steps after the onset or None)
    detected: dict[str, tuple[bool, int | None]]
    #: alerts at warning or worse that no label expects (and info alerts of forbidden ones)
    false_alarms: list[str]
    info_notes: int


def run_dir(case: Case, samples: Path, recorded: Path) -> Path:
    return (samples / case.source) if case.source != "recorded" else (recorded / case.name)


def judge(case: Case, alerts, step_of_onset=None) -> Outcome:
    """Score one case's alerts (``Alert`` records, or the anchor's) against its labels."""
    detected: dict[str, tuple[bool, int | None]] = {}
    expected = {e.indicator: e for e in case.fire}
    false_alarms = []
    for e in case.fire:
        hits = [
            a
            for a in alerts
            if a.indicator == e.indicator and RANK[a.severity] >= RANK[e.severity]
            and a.step >= e.onset
        ]  # fmt: skip
        layers_ok = all(any(a.layer == lay for a in hits) for lay in e.layers)
        ok = bool(hits) and layers_ok
        delay = min(a.step for a in hits) - e.onset if ok else None
        detected[e.indicator] = (ok, delay)
    for a in alerts:
        e = expected.get(a.indicator)
        early = e is not None and a.step < e.onset and RANK[a.severity] >= RANK["warning"]
        stray = e is None and a.indicator not in case.allow and RANK[a.severity] >= RANK["warning"]
        if early or stray or a.indicator in case.forbid:
            false_alarms.append(f"{a.indicator}:{a.severity}@{a.step}[{a.layer}]")
    info = sum(1 for a in alerts if a.severity == "info")
    return Outcome(case.name, case.healthy, detected, false_alarms, info)


def detector_alerts(path: Path, case: Case, settings: CollapseSettings | None = None):
    with open_run(path) as r:
        meta, scalars = r.meta, r.scalars()
    context = Context.from_meta(meta) if "detector_context" in meta else case.context
    return detect_collapse(scalars, settings, context=context)


# ------------------------------------------------------------ the hand-written anchors


@dataclass(frozen=True)
class _AnchorAlert:
    step: int
    indicator: str
    severity: str
    layer: str | None


def _first(series: pd.Series, cond) -> int | None:
    hit = series.index[cond(series)]
    return int(hit[0]) if len(hit) else None


def anchor_alerts(path: Path) -> list[_AnchorAlert]:
    """The plain rules a user writes by hand (a fixed fraction of the initial value, as verl and
    TRL users do on ``actor/entropy``), one per indicator on its usual series, fired once at the
    first step that meets them."""
    with open_run(path) as r:
        s = r.scalars()
    whole_model = "(whole model)"
    s = s.assign(layer=s["layer"].astype(object).fillna(whole_model))
    out: list[_AnchorAlert] = []

    def per_series(metric, indicator, cond, whole=False):
        rows = s[s["metric"] == metric]
        for layer, grp in rows.groupby("layer", sort=False):
            if whole and layer != whole_model:
                continue
            v = grp.set_index("step")["value"].sort_index().dropna()
            if len(v):
                step = _first(v, lambda x, v=v: cond(x, v))
                if step is not None:
                    lay = None if layer == whole_model else layer
                    # a hand rule has no severity: it counts for any labelled one
                    out.append(_AnchorAlert(step, indicator, "critical", lay))

    half = lambda x, v: x < 0.5 * v.iloc[0]  # noqa: E731
    per_series("repr/effective_rank", "rank_collapse", half)
    for m in ("repr/dse", "repr/von_neumann"):
        per_series(m, "entropy_collapse", half)
    for m in ("act/dead_frac", "act/saturated_frac"):
        per_series(m, "saturation", lambda x, v: x > 0.5)
    per_series(
        "train/loss", "loss_divergence", lambda x, v: (x > v.iloc[0]) | ~np.isfinite(x), True
    )
    per_series("lm/token_entropy/mean", "token_entropy_collapse", half, True)
    per_series("lm/topk_entropy", "over_optimisation", lambda x, v: x < 0.8 * v.iloc[0], True)
    per_series("rl/cov/mean", "positive_covariance", lambda x, v: x > 0, True)
    per_series("attn/entropy_norm", "attention_collapse", lambda x, v: x < 0.1)
    per_series(
        "attn/entropy_norm", "entropic_overload", lambda x, v: (x > 0.75) & (x.index >= 1000)
    )
    for m in s["metric"].unique():
        if str(m).startswith("info_plane/") and str(m).endswith("/I_XT"):
            per_series(m, "compression_onset", lambda x, v: x < 0.95 * x.cummax())
    acc, val = (s[s["metric"] == m].set_index("step")["value"] for m in ("train/acc", "val/acc"))
    if len(acc) and len(val):
        gap = (acc - val).dropna()
        step = _first(gap, lambda x: x > 0.3)
        if step is not None:
            out.append(_AnchorAlert(step, "memorisation", "critical", None))
    return out


# ---------------------------------------------------------------------------- tables


def evaluate(cases, samples: Path, recorded: Path, alerts_of) -> list[Outcome]:
    outcomes = []
    for case in cases:
        path = run_dir(case, samples, recorded)
        if not (path / "run.sqlite").exists():
            continue
        outcomes.append(judge(case, alerts_of(path, case)))
    return outcomes


def table(outcomes: list[Outcome]) -> pd.DataFrame:
    """Per indicator: true positives, false positives (alarms on runs not labelled with it,
    healthy ones included), misses, and the median detection delay in steps."""
    rows = []
    for ind in schema.INDICATORS:
        tp = sum(1 for o in outcomes if o.detected.get(ind, (False, None))[0])
        miss = sum(1 for o in outcomes if ind in o.detected and not o.detected[ind][0])
        fp = sum(1 for o in outcomes for f in o.false_alarms if f.split(":")[0] == ind)
        fp_healthy = sum(
            1 for o in outcomes if o.healthy for f in o.false_alarms if f.split(":")[0] == ind
        )
        delays = [o.detected[ind][1] for o in outcomes if o.detected.get(ind, (False, None))[0]]
        rows.append(
            {
                "indicator": ind,
                "labelled": tp + miss,
                "TP": tp,
                "FP": fp,
                "FP on healthy": fp_healthy,
                "misses": miss,
                "median delay": float(np.median(delays)) if delays else math.nan,
            }
        )
    return pd.DataFrame(rows)


def goal_met(outcomes: list[Outcome]) -> tuple[bool, list[str]]:
    """No false alarm at warning or above on a healthy run (nor a forbidden indicator), and
    every labelled pathology detected."""
    problems = []
    for o in outcomes:
        for f in o.false_alarms:
            problems.append(f"{o.case}: false alarm {f}")
        for ind, (ok, _) in o.detected.items():
            if not ok:
                problems.append(f"{o.case}: missed {ind}")
    return not problems, problems
