"""Compare: any metric across runs, aligned by step."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as D
from dashboard import figures as F
from dashboard import view as V

WHOLE = "(whole model)"

st.title("Compare runs")
runs = V.require_runs()
S = V.settings()

names = {r.rel: set(D.metric_names(r)) for r in runs}
every = sorted(set().union(*names.values()))
if not every:
    st.info("The selected runs have no scalar metrics yet.")
    V.stop_until_new_rows(runs)
# metrics logged by every selected run first
common_metrics = [m for m in every if all(m in n for n in names.values())]
options = common_metrics + [m for m in every if m not in common_metrics]

c1, c2, _ = st.columns([2, 2, 3])
metric = V.picker(
    c1,
    "Metric",
    options,
    key="cmp_metric",
    help="Metrics logged by every selected run come first.",
    icon=":material/stacked_line_chart:",
    width="stretch",
)
missing = [r.rel for r in runs if metric not in names[r.rel]]
if missing:
    st.caption(f"`{metric}` is not logged by: {', '.join(missing)}")


def load() -> pd.DataFrame:
    parts = []
    for r in runs:
        if metric not in names[r.rel]:
            continue
        df = D.scalars(r, [metric])
        parts.append(
            pd.DataFrame(
                {
                    "run": r.rel,
                    "layer": df["layer"].astype(object).fillna(WHOLE).to_numpy(),
                    "step": df["step"].to_numpy(),
                    "value": F.convert_units(df["value"].to_numpy(), metric, S["unit"]),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["run", "layer", "step", "value"])
    return pd.concat(parts, ignore_index=True)


data = load()
layer_options = list(pd.unique(data["layer"]))
layer = (
    V.picker(c2, "Layer", layer_options, key="cmp_layer", icon=":material/layers:", width="stretch")
    if len(layer_options) > 1
    else (layer_options[0] if layer_options else WHOLE)
)


@st.fragment(run_every=V.run_every(runs))
def draw() -> None:
    df = load()
    df = df[df["layer"] == layer]
    V.live_caption(runs)
    fig = F.line_figure(
        df.assign(series=pd.Categorical(df["run"], categories=[r.rel for r in runs])),
        smoothing=S["smoothing"],
        log_x=S["log_x"],
        log_y=S["log_y"],
        max_points=S["max_points"],
        y_title=f"{metric}{F.unit_suffix(metric, S['unit'])}",
        title=f"{metric} · {layer}",
    )
    V.chart(fig, df, key="cmp_chart", file_name=f"compare_{metric.replace('/', '_')}.csv")
    if not df.empty:
        g = df.groupby("run", sort=False)
        last = df.sort_values("step").groupby("run", sort=False).tail(1).set_index("run")
        summary = pd.DataFrame(
            {
                "last step": last["step"],
                "last value": last["value"],
                "min": g["value"].min(),
                "max": g["value"].max(),
                "points": g.size(),
            }
        )
        summary["last value"] = [f"{v:.6g}" for v in summary["last value"]]
        # a Markdown table: a few rows, no interaction (st.table cost a page load about
        # 0.1 s of drawing, the interactive grid more)
        st.markdown(V.markdown_table(summary, index="run"))


draw()
