"""Language model: token entropy (mean and quantile bands; the full distribution), top-k
indicators, attention entropy per layer and head, entropy vs reward, covariance share."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as D
from dashboard import figures as F
from dashboard import view as V

QUANTILES = [f"lm/token_entropy/{q}" for q in ("mean", *F.QUANTILE_COLUMNS)]
TOPK = ["lm/topk_entropy", "lm/topk_entropy_renorm", "lm/topk_mass", "lm/sum_p2"]
RL = ["rl/reward", "rl/cov/pos_share", "rl/cov/mean", "rl/fit/a", "rl/fit/b", "rl/fit/ceiling"]
ENTROPY_CHOICES = ["lm/token_entropy/mean", "rl/completion_entropy", "rl/answer_entropy"]

st.title("Language model")
runs = V.require_runs()
S = V.settings()
unit = S["unit"]
names = {r.rel: set(D.metric_names(r)) for r in runs}
has = lambda m: any(m in n for n in names.values())  # noqa: E731
has_attn = any(any(m.startswith("attn/entropy") for m in n) for n in names.values())
if not (any(has(m) for m in QUANTILES + TOPK + RL) or has_attn):
    st.info(
        "No language-model metrics in the selected runs. They appear once a run logs "
        "`lm/token_entropy/mean` (and `q05`…`q95`), a `lm/token_entropy` histogram, "
        "`lm/topk_*`, `attn/entropy/h{H}` per layer, or `rl/reward` and `rl/cov/*` "
        "(the language-model probes write them).",
        icon=":material/translate:",
    )
    V.suggest_runs(
        lambda n: any(m.startswith(("lm/", "rl/", "attn/entropy")) for m in n),
        "language-model metrics",
    )
    V.stop_until_new_rows(runs)

attn_runs = [r for r in runs if any(m.startswith("attn/entropy/h") for m in names[r.rel])]
h_choices = [m for m in ENTROPY_CHOICES if has(m)] or ENTROPY_CHOICES[:1]
#: the page's sections, one tab each; only the open tab's charts are read, built and sent
#: (whether the selected runs logged what it draws), the first of those opens by default.
#: A tab draws one chart where it can: each further chart cost a page load ~0.1-0.2 s.
SECTIONS = {
    "Token entropy": any(has(m) for m in QUANTILES),
    "Entropy distribution": any(not D.distributions(r, "lm/token_entropy").empty for r in runs),
    "Top-k": any(has(m) for m in TOPK),
    "Attention": bool(attn_runs),
    "Entropy vs reward": has("rl/reward"),
    "Covariance": has("rl/cov/pos_share") or has("rl/cov/mean"),
}
with_data = [name for name, logged in SECTIONS.items() if logged]
multi = len(runs) > 1  # several runs: series are named by run


def whole_model(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["layer"].isna()]


def tidy(run, metric_list, *, convert=True) -> pd.DataFrame:
    df = whole_model(D.scalars(run, metric_list))
    out = pd.DataFrame(
        {
            "run": run.rel,
            "metric": df["metric"].astype(object).to_numpy(),
            "step": df["step"].to_numpy(),
            "value": df["value"].to_numpy(),
        }
    )
    if convert:
        for m in out["metric"].unique():
            sel = out["metric"] == m
            out.loc[sel, "value"] = F.convert_units(out.loc[sel, "value"].to_numpy(), m, unit)
    return out


def token_entropy() -> None:
    bands, band_rows = {}, []
    for r in runs:
        t = tidy(r, QUANTILES)
        if t.empty:
            continue
        wide = t.pivot_table(index="step", columns="metric", values="value", aggfunc="last")
        wide.columns = [c.rsplit("/", 1)[1] for c in wide.columns]
        wide = wide.reset_index()
        bands[r.rel] = wide
        band_rows.append(wide.assign(run=r.rel))
    if bands:
        fig = F.quantile_band_figure(
            bands, log_x=S["log_x"], max_points=S["max_points"], y_title=f"token entropy ({unit})"
        )
        V.chart(
            fig,
            pd.concat(band_rows, ignore_index=True),
            key="lm_bands",
            file_name="token_entropy.csv",
        )
    else:
        st.caption("No `lm/token_entropy/mean` or quantiles logged.")


def entropy_distribution() -> None:
    any_hist = False
    for r in runs:
        dists = D.distributions(r, "lm/token_entropy")
        if dists.empty:
            continue
        any_hist = True
        steps, edges, frac = F.histogram_grid(dists)
        scale = 1 / F.LN2 if unit == "bits" else 1.0
        fig = F.distribution_heatmap_figure(
            steps, edges * scale, frac, y_title=f"token entropy ({unit})", log_x=S["log_x"]
        )
        if multi:
            st.markdown(f"**{r.rel}** — distribution over steps")
        else:
            st.markdown("Distribution over steps")
        centres = (edges[:-1] + edges[1:]) / 2 * scale

        def long(frac=frac, centres=centres, steps=steps) -> pd.DataFrame:  # made on download
            grid = pd.DataFrame(frac, index=centres, columns=steps)
            return (
                grid.rename_axis("entropy")
                .reset_index()
                .melt(id_vars="entropy", var_name="step", value_name="share")
            )

        V.chart(fig, long, key=f"lm_hist_{r.rel}", file_name="token_entropy_distribution.csv")
    if not any_hist:
        st.caption("No `lm/token_entropy` histograms logged (`RunWriter.log_distribution`).")


def top_k() -> None:
    topk = pd.concat([tidy(r, TOPK) for r in runs], ignore_index=True)
    if topk.empty:
        st.caption("No `lm/topk_*` metrics logged.")
    else:
        cols = st.columns(2)
        for col, group, title in (
            (cols[0], ["lm/topk_entropy", "lm/topk_entropy_renorm"], f"top-k entropy ({unit})"),
            (cols[1], ["lm/topk_mass", "lm/sum_p2"], "top-k mass, Σp²"),
        ):
            part = topk[topk["metric"].isin(group)]
            if part.empty:
                continue
            part = part.assign(
                series=(part["run"] + " · " + part["metric"]) if multi else part["metric"]
            )
            fig = F.line_figure(
                part,
                smoothing=S["smoothing"],
                log_x=S["log_x"],
                log_y=S["log_y"],
                max_points=S["max_points"],
                y_title=title,
                height=340,
                legend_below=True,
            )
            with col:
                V.chart(
                    fig,
                    part.drop(columns="series"),
                    key=f"lm_topk_{group[0]}",
                    file_name="topk.csv",
                )


def attention(attn_run: str | None, attn_norm: bool) -> None:
    if attn_run is None:
        st.caption("No per-head `attn/entropy/h{H}` metrics logged.")
    else:
        run = next(r for r in attn_runs if r.rel == attn_run)
        prefix = "attn/entropy_norm/h" if attn_norm else "attn/entropy/h"
        wanted = [m for m in names[run.rel] if m.startswith(prefix)]
        if not wanted:
            st.caption(f"`{run.rel}` has no `{prefix}*` metrics.")
        else:
            heads = F.attention_frame(D.scalars(run, wanted), normalized=attn_norm)
            z_title = "normalised entropy" if attn_norm else f"entropy ({unit})"
            if not attn_norm:
                heads["value"] = F.convert_units(heads["value"].to_numpy(), "attn/entropy", unit)
            fig = F.attention_heatmap_figure(heads, z_title=z_title)
            st.markdown(f"**{run.rel}** — layer × head (slider: step)")
            V.chart(fig, heads, key="lm_attn", file_name="attention_entropy_heads.csv")
            mean = (
                heads.groupby(["layer", "step"], observed=True, sort=False)["value"]
                .mean()
                .reset_index()
            )
            mean["layer"] = pd.Categorical(
                mean["layer"].astype(object),
                categories=list(pd.unique(heads["layer"].astype(object))),
            )
            fig = F.heatmap_figure(mean, z_title="mean over heads", log_x=S["log_x"], height=None)
            st.markdown("Mean over heads, layer × step")
            V.chart(fig, mean, key="lm_attn_steps", file_name="attention_entropy_layers.csv")


def entropy_reward(h_metric: str) -> None:
    shown = False
    for r in runs:
        t = tidy(r, [h_metric, "rl/reward", "rl/fit/a", "rl/fit/b"], convert=False)
        if t.empty or "rl/reward" not in set(t["metric"]):
            continue
        wide = t.pivot_table(index="step", columns="metric", values="value", aggfunc="last")
        if h_metric not in wide:
            continue
        pairs = pd.DataFrame(
            {
                "step": wide.index.to_numpy(),
                "entropy": wide[h_metric].to_numpy(),
                "reward": wide["rl/reward"].to_numpy(),
            }
        ).dropna()
        fit = None
        if "rl/fit/a" in wide and "rl/fit/b" in wide:
            ab = wide[["rl/fit/a", "rl/fit/b"]].dropna()
            if len(ab):
                fit = (float(ab["rl/fit/a"].iloc[-1]), float(ab["rl/fit/b"].iloc[-1]))
        fig = F.entropy_reward_figure(pairs, fit=fit, unit=unit)
        if multi:
            st.markdown(f"**{r.rel}**")
        V.chart(fig, pairs, key=f"lm_er_{r.rel}", file_name="entropy_reward.csv")
        shown = True
    if not shown:
        st.caption("Needs `rl/reward` and an entropy metric logged at the same steps.")
    else:
        st.caption(
            "Fitted law R = −a·exp(H) + b (H in nats, Cui et al. 2025); the dashed line is "
            "the reward it predicts once entropy is exhausted (H = 0)."
        )


def covariance() -> None:
    cov = pd.concat([tidy(r, ["rl/cov/pos_share", "rl/cov/mean"]) for r in runs], ignore_index=True)
    if cov.empty:
        st.caption("No `rl/cov/*` metrics logged.")
    else:
        cov = cov.assign(series=(cov["run"] + " · " + cov["metric"]) if multi else cov["metric"])
        fig = F.line_figure(
            cov,
            smoothing=S["smoothing"],
            log_x=S["log_x"],
            max_points=S["max_points"],
            y_title="share of tokens with positive covariance / mean covariance",
            height=320,
        )
        V.chart(fig, cov.drop(columns="series"), key="lm_cov", file_name="covariance.csv")


@st.fragment(run_every=V.run_every(runs))
def draw(section: str, **options) -> None:
    V.live_caption(runs)
    {
        "Token entropy": token_entropy,
        "Entropy distribution": entropy_distribution,
        "Top-k": top_k,
        "Attention": attention,
        "Entropy vs reward": entropy_reward,
        "Covariance": covariance,
    }[section](**options)


tabs = st.tabs(
    list(SECTIONS),
    default=with_data[0] if with_data else None,
    key="lm_section",
    on_change="rerun",
    bind="query-params",
)
for tab, section in zip(tabs, SECTIONS):
    if not tab.open:
        continue
    with tab:
        options = {}
        if section == "Attention":
            c1, c2 = st.columns(2)
            options["attn_run"] = (
                c1.selectbox(
                    "Attention of run", [r.rel for r in attn_runs], key="lm_attn_run", **V.URL
                )
                if len(attn_runs) > 1
                else (attn_runs[0].rel if attn_runs else None)
            )
            options["attn_norm"] = c2.toggle(
                "Normalised attention entropy",
                False,
                key="lm_attn_norm",
                help="Entropy divided by its maximum log(i + 1) for causal rows.",
                **V.URL,
            )
        elif section == "Entropy vs reward":
            options["h_metric"] = st.selectbox(
                "Entropy for the reward law", h_choices, key="lm_h", **V.URL
            )
        draw(section, **options)
