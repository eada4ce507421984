"""Language-model detectors over whole-model series: token-entropy collapse in RL fine-tuning,
likelihood over-optimisation (top-k entropy and mass) and positive entropy-advantage
covariance.

Sources: Cui et al. 2025 (arXiv:2505.22617, token entropy collapse and the covariance mechanism
of RL for reasoning LMs); Shi et al. 2024 (arXiv:2410.11677, likelihood over-optimisation in
direct alignment). Each series is smoothed with a trailing median of ``lm_window`` records and
compared with its initial value, the median of its first ``lm_baseline_points`` records.
"""

from __future__ import annotations

from collections import deque

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


class SmoothedSeries:
    """A whole-model series: its initial value (median of the first points), its trailing
    median, and the last points for evidence."""

    __slots__ = ("first_step", "head", "initial", "median", "smoothed", "window", "n_base")

    def __init__(self, settings) -> None:
        self.n_base = settings.lm_baseline_points
        self.first_step: int | None = None
        self.head: list[float] = []
        self.initial: float | None = None
        self.median = RollingMedian(settings.lm_window)
        self.smoothed: float | None = None
        self.window = Window(settings.evidence_points)

    def add(self, step: int, value: float) -> bool:
        """Add a point; True once the initial value is known (the series can be judged)."""
        if self.first_step is None:
            self.first_step = step
        self.window.add(step, value)
        self.smoothed = self.median.add(value)
        if self.initial is None:
            self.head.append(value)
            if len(self.head) >= self.n_base:
                ordered = sorted(self.head)
                mid = len(ordered) // 2
                self.initial = (
                    ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
                )
        return self.initial is not None


class _WholeModel(Detector):
    """Rows of the whole model only (``layer`` NULL), grouped by step."""

    def series(self, metric: str) -> SmoothedSeries:
        s = self.state.get(metric)
        if s is None:
            s = self.state[metric] = SmoothedSeries(self.s)
        return s

    def observe_step(self, step, rows):
        values = {m: v for m, layer, v in rows if layer is None and finite(v)}
        return self.judge(step, values) if values else []

    def judge(self, step: int, values: dict[str, float]):  # pragma: no cover - interface
        raise NotImplementedError


class TokenEntropyCollapse(_WholeModel):
    """Token-entropy collapse in RL fine-tuning: a fast early drop, then near-exhaustion.

    Cui et al. (2025) find that without intervention policy entropy falls sharply at the start
    of RL (about 73% of it within the first 200 steps) and keeps sliding toward 0, where the
    reward saturates. Judged in RL fine-tuning only, from the first step that records one of
    ``rl_metrics`` (reward, covariance; ``LMMonitor.log_rl`` writes them): in pretraining and
    SFT, token entropy falls because the model learns (``context.rl`` overrides the guess). On
    the smoothed series ``H_t`` against
    its initial value ``H_0`` (the first records of the RL phase): *warning*
    when ``H_t <= (1 - token_entropy_early_drop) H_0`` within ``token_entropy_early_steps``
    steps of the first record (a fast early drop); *critical* when ``H_t <=
    token_entropy_floor H_0`` at any step (exploration exhausted; 0.1 is our choice).
    """

    indicator = "token_entropy_collapse"
    summary = (
        "Token entropy fell fast early in RL and toward zero: exploration is collapsing "
        "(Cui et al. 2025)."
    )

    def __init__(self, settings, context=None) -> None:
        super().__init__(settings, context)
        self.debounce = Debounce(1)  # the rolling median already filters noise
        self.rl = False

    def watches(self, metric: str) -> bool:
        return metric == self.s.token_entropy_metric or metric in self.s.rl_metrics

    def judge(self, step, values):
        metric = self.s.token_entropy_metric
        if self.context.rl is None:
            self.rl = self.rl or any(m in values for m in self.s.rl_metrics)
        else:
            self.rl = self.context.rl
        if not self.rl or metric not in values:
            return []
        s = self.series(metric)
        if not s.add(step, values[metric]) or not s.initial > 0:
            return []
        h0, h = s.initial, s.smoothed
        early = step - s.first_step <= self.s.token_entropy_early_steps
        level = 0
        if h <= self.s.token_entropy_floor * h0:
            level = CRITICAL
        elif early and h <= (1 - self.s.token_entropy_early_drop) * h0:
            level = WARNING
        report = self.debounce.update(level)
        if not report:
            return []
        if report == CRITICAL:
            threshold = self.s.token_entropy_floor * h0
            rule = "smoothed entropy <= token_entropy_floor * initial"
            message = (
                f"token entropy is at {h / h0:.0%} of its initial value ({h:.3g} of {h0:.3g} "
                "nats): exploration is exhausted"
            )
        else:
            threshold = (1 - self.s.token_entropy_early_drop) * h0
            rule = (
                "smoothed entropy <= (1 - token_entropy_early_drop) * initial within "
                "token_entropy_early_steps steps"
            )
            message = (
                f"token entropy fell by {1 - h / h0:.0%} within {step - s.first_step} steps "
                f"(from {h0:.3g} to {h:.3g} nats)"
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
                    s.window,
                    threshold=threshold,
                    direction="below",
                    rule=rule,
                    settings=self.settings_of(
                        (
                            "token_entropy_early_steps",
                            "token_entropy_early_drop",
                            "token_entropy_floor",
                            "lm_window",
                            "lm_baseline_points",
                        )
                    ),
                    initial=h0,
                    smoothed=h,
                ),
            )
        ]


class OverOptimisation(_WholeModel):
    """Likelihood over-optimisation: falling top-k entropy together with shrinking top-k mass.

    Shi et al. (2024) identify two indicators that output diversity has been over-optimised in
    direct alignment (DPO, IPO...): decreasing entropy over the top-k tokens and diminishing
    top-k probability mass. On the smoothed series relative to their initial values: *warning*
    when the top-k entropy is down by ``overopt_entropy_drop`` (20%) **and** the top-k mass by
    ``overopt_mass_drop`` (5%); *info* when only the entropy is (one indicator, or no mass
    series). The paper gives no numbers; the defaults are ours.
    """

    indicator = "over_optimisation"
    summary = (
        "Top-k entropy and top-k probability mass fell together: likelihood over-optimisation "
        "in direct alignment (Shi et al. 2024)."
    )

    def __init__(self, settings, context=None) -> None:
        super().__init__(settings, context)
        self.debounce = Debounce(1)

    def watches(self, metric: str) -> bool:
        return metric in (self.s.topk_entropy_metric, self.s.topk_mass_metric)

    def judge(self, step, values):
        em, mm = self.s.topk_entropy_metric, self.s.topk_mass_metric
        ent, mass = self.series(em), self.series(mm)
        if mm in values:
            mass.add(step, values[mm])
        if em not in values or not ent.add(step, values[em]) or not ent.initial > 0:
            return []
        ent_down = ent.smoothed <= (1 - self.s.overopt_entropy_drop) * ent.initial
        mass_known = mass.initial is not None and mass.initial > 0
        mass_down = mass_known and mass.smoothed <= (1 - self.s.overopt_mass_drop) * mass.initial
        level = WARNING if ent_down and mass_down else INFO if ent_down else 0
        report = self.debounce.update(level)
        if not report:
            return []
        fell = 1 - ent.smoothed / ent.initial
        if report == WARNING:
            message = (
                f"top-k entropy fell by {fell:.0%} and top-k mass shrank by "
                f"{1 - mass.smoothed / mass.initial:.0%}: likelihood over-optimisation"
            )
        else:
            message = f"top-k entropy fell by {fell:.0%} from its initial value" + (
                "" if mass_known else " (no top-k mass series to confirm)"
            )
        return [
            self.alert(
                step,
                report,
                message,
                None,
                evidence(
                    em,
                    None,
                    ent.window,
                    threshold=(1 - self.s.overopt_entropy_drop) * ent.initial,
                    direction="below",
                    rule="top-k entropy down by overopt_entropy_drop (info), and top-k mass down "
                    "by overopt_mass_drop (warning)",
                    settings=self.settings_of(
                        ("overopt_entropy_drop", "overopt_mass_drop", "lm_window")
                    ),
                    related={mm: mass.window} if mass_known else None,
                    initial=ent.initial,
                    mass_initial=mass.initial,
                    mass_threshold=(1 - self.s.overopt_mass_drop) * mass.initial
                    if mass_known
                    else None,
                ),
            )
        ]


class PositiveCovariance(_WholeModel):
    """Positive entropy-advantage covariance dominates, and is driving entropy down.

    Cui et al. (2025) show the first-order entropy change of a softmax policy under policy
    gradient is ``-eta Cov(log pi, A)``, and that the covariance stays mostly positive through
    RL, which explains the monotonic entropy decline. The sign test: over the last
    ``cov_window`` (20) records the batch-mean covariance (``rl/cov/mean``) was positive at
    ``>= cov_min_fraction`` (0.9) of them, and the share of tokens with positive covariance
    (``rl/cov/pos_share``) averaged above ``cov_share_threshold`` (0.5); each condition applies
    when its series is recorded. *warning* when the token entropy fell by at least
    ``cov_entropy_drop`` (10%) over the same window: the covariance is doing what the theory
    says, and is below its initial value. *info* otherwise: with the covariance positive but
    the entropy held above where it started (Clip-Cov, KL-Cov, an entropy bonus) or not
    recorded, the run is not losing entropy to it.
    """

    indicator = "positive_covariance"
    summary = (
        "The entropy-advantage covariance stays positive, the mechanism that drives policy "
        "entropy down in RL (Cui et al. 2025); a warning only while entropy is falling."
    )

    def __init__(self, settings, context=None) -> None:
        super().__init__(settings, context)
        n = settings.cov_window
        self.signs: deque[float] = deque(maxlen=n)
        self.shares: deque[float] = deque(maxlen=n)
        self.entropy: deque[tuple[int, float]] = deque(maxlen=n)
        self.debounce = Debounce(1)

    def watches(self, metric: str) -> bool:
        return metric in (
            self.s.cov_mean_metric,
            self.s.cov_share_metric,
            self.s.token_entropy_metric,
        )

    def judge(self, step, values):
        cm, cs, te = self.s.cov_mean_metric, self.s.cov_share_metric, self.s.token_entropy_metric
        if te in values:
            ent = self.series(te)
            ent.add(step, values[te])
            self.entropy.append((step, ent.smoothed))
        if cm not in values and cs not in values:
            return []
        n = self.s.cov_window
        if cm in values:
            self.signs.append(1.0 if values[cm] > 0 else 0.0)
            self.series(cm).add(step, values[cm])
        if cs in values:
            self.shares.append(values[cs])
            self.series(cs).add(step, values[cs])
        has_mean, has_share = cm in self.state, cs in self.state
        positive = sum(self.signs) / len(self.signs) if self.signs else None
        share = sum(self.shares) / len(self.shares) if self.shares else None
        cond = True
        if has_mean:
            cond &= len(self.signs) >= n and positive >= self.s.cov_min_fraction
        if has_share:
            cond &= len(self.shares) >= n and share > self.s.cov_share_threshold
        falling = None
        if cond and len(self.entropy) >= 2 and self.entropy[0][1] > 0:
            initial = self.series(te).initial
            now = self.entropy[-1][1]
            falling = now <= (1 - self.s.cov_entropy_drop) * self.entropy[0][1] and (
                initial is None or now < initial
            )
        level = (WARNING if falling else INFO) if cond else 0
        report = self.debounce.update(level)
        if not report:
            return []
        parts = []
        if has_mean:
            parts.append(f"mean covariance positive at {positive:.0%} of the last {n} records")
        if has_share:
            parts.append(f"{share:.0%} of tokens with positive covariance")
        if report == WARNING:
            (s0, h0), (s1, h1) = self.entropy[0], self.entropy[-1]
            tail = (
                f"token entropy fell {1 - h1 / h0:.0%} over steps {s0}-{s1}: the covariance is "
                "driving entropy down"
            )
        elif falling is None:
            tail = "no token-entropy series to tell whether it is driving entropy down"
        else:
            tail = "token entropy is holding (an intervention or bonus may be countering it)"
        main = cm if has_mean else cs
        return [
            self.alert(
                step,
                report,
                "positive entropy-advantage covariance dominates ("
                + "; ".join(parts)
                + "); "
                + tail,
                None,
                evidence(
                    main,
                    None,
                    self.series(main).window,
                    threshold=0.0 if has_mean else self.s.cov_share_threshold,
                    direction="above",
                    rule="mean covariance > 0 at >= cov_min_fraction of the last cov_window "
                    "records (and positive share > cov_share_threshold); warning when token "
                    "entropy fell by >= cov_entropy_drop over them to below its initial value",
                    settings=self.settings_of(
                        (
                            "cov_window",
                            "cov_min_fraction",
                            "cov_share_threshold",
                            "cov_entropy_drop",
                        )
                    ),
                    related={
                        m: self.series(m).window for m in (cs, te) if m in self.state and m != main
                    },
                    positive_fraction=positive,
                    pos_share_mean=share,
                    entropy_falling=falling,
                ),
            )
        ]
