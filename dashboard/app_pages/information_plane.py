"""Information plane: I(X;T) against I(T;Y) per layer over training, runs side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as D
from dashboard import figures as F
from dashboard import view as V
from dashboard.figures.info_plane import DEFAULT_LAYERS, FEW_POSITIONS

st.title("Information plane")
runs = V.require_runs()
S = V.settings()

estimators_by_run = {r.rel: F.info_plane_estimators(D.metric_names(r)) for r in runs}
estimators = sorted({e for es in estimators_by_run.values() for e in es})
if not estimators:
    st.info(
        "No information-plane metrics in the selected runs. They appear once a run logs "
        "`info_plane/{estimator}/I_XT` and `info_plane/{estimator}/I_TY` per layer, e.g. "
        "with the information-plane probe, or `RunWriter.log(step, {...}, layer=name)`.",
        icon=":material/scatter_plot:",
    )
    V.suggest_runs(lambda names: bool(F.info_plane_estimators(names)), "an information plane")
    V.stop_until_new_rows(runs)

c1, c2, c3 = st.columns([1, 1, 4], vertical_alignment="center")
# the view's controls in popovers: the browser draws their widgets only when one is
# opened (the page draws a button each, and a line saying what is shown)
with c1.popover("View", icon=":material/tune:", width="stretch"):
    est = st.selectbox(
        "Estimator",
        estimators,
        key="ip_est",
        help="Mutual-information estimator the run logged (several can be recorded).",
        **V.URL,
    )
    with_est = [r for r in runs if est in estimators_by_run[r.rel]]
    metrics = [f"info_plane/{est}/I_XT", f"info_plane/{est}/I_TY"]

    def rows() -> dict[str, pd.DataFrame]:
        return {r.rel: D.scalars(r, metrics) for r in with_est}

    raw = rows()
    steps = sorted({int(s) for df in raw.values() for s in df["step"].unique()})
    upto = st.select_slider(
        "Show steps up to",
        options=[str(s) for s in steps] + ["latest"],
        value="latest",
        key="ip_upto",
        help="'latest' follows a live run.",
        **V.URL,
    )
    animate = st.toggle("Animate", False, key="ip_anim", help="Play the trajectories.", **V.URL)
    points = st.selectbox(
        "Points per trajectory",
        [30, 60, 120, 250, 500, 1000],
        index=1,
        key="ip_pts",
        help="Long trajectories are drawn with this many points, evenly spaced plus each "
        "stretch's extremes (markers are slow to draw).",
        **V.URL,
    )
layers = list(dict.fromkeys(lay for df in raw.values() for lay in D.with_layer_order(df)))
with c2:
    picked = V.layer_picker(
        layers,
        default=V.evenly_spaced(layers, DEFAULT_LAYERS),
        key="ip_layers",
        help=f"Trajectories drawn (at most {DEFAULT_LAYERS} evenly spaced layers by default).",
    )
c3.caption(
    f"Estimator `{est}` · steps up to {upto} · {points} points per trajectory"
    + (" · animated" if animate else "")
)
for r in runs:
    if r not in with_est:
        st.caption(f"{r.rel}: no `{est}` information-plane metrics.")


@st.fragment(run_every=V.run_every(with_est))
def draw() -> None:
    data = {}
    for k, v in rows().items():
        v = v[v["layer"].isin(picked)]
        if upto != "latest":
            v = v[v["step"] <= int(upto)]
        data[k] = F.info_plane_frame(v, est, unit=S["unit"])
    total = sum(len(v) for v in data.values())
    anim = animate and total <= 20000
    if animate and not anim:
        st.caption("Too many points to animate; showing the static picture.")
    fig = F.info_plane_figure(data, unit=S["unit"], max_points=points, animate=anim)
    onsets = {r.rel: F.onset_points(data[r.rel], D.alerts(r), est) for r in with_est}
    F.add_onset_markers(fig, onsets, data, unit=S["unit"])
    V.live_caption(with_est)
    frame = pd.concat([v.assign(run=k) for k, v in data.items()], ignore_index=True)
    if not frame.empty:
        frame = frame[["run", "layer", "step", "I_XT", "I_TY"]]
    V.chart(fig, frame, key="ip_chart", file_name=f"information_plane_{est}_{S['unit']}.csv")


draw()
# outside the fragment: a live refresh does not send it again
st.caption(
    f"Each line is one layer's trajectory (at most {points} points each: evenly "
    "spaced, and the turning points; the CSV holds all); marker colour is the training "
    f"step. A layer that visits fewer than {FEW_POSITIONS} distinct positions is drawn as "
    "points only; a red star marks a layer's compression onset (its alert). "
    f"Estimator `{est}`, in {S['unit']}. Fitting moves right (I(X;T) grows) and up; "
    "compression moves left."
)
