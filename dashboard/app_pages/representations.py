"""Representations: DSE, DSMI, effective rank, von Neumann entropy and activation
statistics per layer over steps; layer x step heatmap; per-layer small multiples."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as D
from dashboard import figures as F
from dashboard import view as V

KNOWN = F.REPRESENTATION_METRICS
PREFIXES = F.REPRESENTATION_PREFIXES
LABELS = {
    "repr/dse": "diffusion spectral entropy (DSE)",
    "repr/dsmi_y": "DSMI with labels",
    "repr/dsmi_x": "DSMI with inputs",
    "repr/effective_rank": "effective rank",
    "repr/von_neumann": "von Neumann entropy",
    "repr/alpha_req": "α-ReQ (spectral decay)",
    "act/dead_frac": "dead units (share)",
    "act/saturated_frac": "saturated units (share)",
}

st.title("Representations")
runs = V.require_runs()
S = V.settings()

present = sorted({m for r in runs for m in D.metric_names(r) if m.startswith(PREFIXES)})
options = [m for m in KNOWN if m in present] + [m for m in present if m not in KNOWN]
if not options:
    st.info(
        "No representation metrics in the selected runs. They appear once a run logs "
        "`repr/dse`, `repr/dsmi_y`, `repr/effective_rank`, `repr/von_neumann` or `act/*` "
        "per layer (the spectral and activation probes write them).",
        icon=":material/stacked_line_chart:",
    )
    V.stop_until_new_rows(runs)

c1, c2 = st.columns([2, 1])
metric = V.picker(
    c1,
    "Metric",
    options,
    key="rep_metric",
    help="; ".join(f"{m}: {d}" for m, d in LABELS.items()),
    icon=":material/stacked_line_chart:",
)
view = c2.segmented_control(
    "View",
    ["Lines", "Heatmap", "Small multiples"],
    default="Lines",
    required=True,
    key="rep_view",
    help="Lines: the picked layers over steps. Heatmap: every layer × step. Small "
    "multiples: one panel per picked layer.",
    **V.URL,
)


def load() -> pd.DataFrame:
    parts = []
    for r in runs:
        df = D.scalars(r, [metric])
        df = df[df["layer"].notna()]
        if df.empty:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "run": r.rel,
                    "layer": df["layer"].astype(object).to_numpy(),
                    "step": df["step"].to_numpy(),
                    "value": F.convert_units(df["value"].to_numpy(), metric, S["unit"]),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["run", "layer", "step", "value"])
    return pd.concat(parts, ignore_index=True)


data = load()
layers = list(pd.unique(data["layer"])) if not data.empty else []
if not layers:
    st.info(f"No per-layer `{metric}` rows in the selected runs.")
    V.stop_until_new_rows(runs)
picked = V.layer_picker(
    layers,
    default=V.evenly_spaced(layers, 8),
    key="rep_layers",
    help="Layers drawn as lines and small multiples (the heatmap shows all).",
)
y_title = f"{metric}{F.unit_suffix(metric, S['unit'])}"
if metric in LABELS:
    st.caption(
        f"`{metric}`: {LABELS[metric]}"
        + (f", in {S['unit']}" if F.is_information_metric(metric) else "")
    )


@st.fragment(run_every=V.run_every(runs))
def draw() -> None:
    df = load()
    V.live_caption(runs)
    sel = df[df["layer"].isin(picked)]
    multi = len(runs) > 1
    if view == "Lines":
        lines = sel.assign(series=(sel["run"] + " · " + sel["layer"]) if multi else sel["layer"])
        lines["series"] = pd.Categorical(
            lines["series"],
            categories=list(pd.unique(lines.sort_values(["run"], kind="stable")["series"])),
        )
        fig = F.line_figure(
            lines,
            smoothing=S["smoothing"],
            log_x=S["log_x"],
            log_y=S["log_y"],
            max_points=S["max_points"],
            y_title=y_title,
        )
        V.chart(fig, sel, key="rep_lines", file_name=f"{metric.replace('/', '_')}_lines.csv")
    elif view == "Heatmap":
        for r in runs:
            part = df[df["run"] == r.rel]
            if part.empty:
                continue
            heat = F.heatmap_figure(
                part, title=r.rel if multi else None, z_title=y_title, log_x=S["log_x"]
            )
            V.chart(
                heat,
                part,
                key=f"rep_heat_{r.rel}",
                file_name=f"{metric.replace('/', '_')}_heatmap.csv",
            )
    else:
        fig = F.small_multiples_figure(
            sel,
            smoothing=S["smoothing"],
            log_x=S["log_x"],
            log_y=S["log_y"],
            max_points=max(100, S["max_points"] // 4),
            y_title=y_title,
        )
        V.chart(fig, sel, key="rep_multiples", file_name=f"{metric.replace('/', '_')}_layers.csv")


draw()
