"""Collapse: a status card per indicator, every alert on a timeline, and the series that
triggered a chosen alert."""

from __future__ import annotations

import fnmatch

import pandas as pd
import streamlit as st

from dashboard import data as D
from dashboard import figures as F
from dashboard import view as V
from diagnostics import schema

BADGE = {
    "ok": ":green[● ok]",
    "info": ":blue[ℹ info]",
    "warning": ":orange[▲ warning]",
    "critical": ":red[✖ critical]",
}

st.title("Collapse indicators")
runs = V.require_runs()
S = V.settings()


def all_alerts() -> pd.DataFrame:
    parts = [D.alerts(r).assign(run=r.rel) for r in runs]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(
            columns=[
                "id",
                "step",
                "wall_time",
                "indicator",
                "severity",
                "layer",
                "message",
                "evidence",
                "run",
            ]
        )
    return pd.concat(parts, ignore_index=True)


alerts = all_alerts()
indicators = list(schema.INDICATORS) + sorted(set(alerts["indicator"]) - set(schema.INDICATORS))


def series_metric(run, alert) -> str | None:
    """The metric that shows ``alert``: the evidence's ``metric`` if it names one, else
    the indicator's usual series."""
    names = D.metric_names(run)
    ev = alert["evidence"] if isinstance(alert["evidence"], dict) else {}
    if isinstance(ev.get("metric"), str) and ev["metric"] in names:
        return ev["metric"]
    info = F.INDICATOR_INFO.get(alert["indicator"], {})
    for pattern in info.get("series", ()):
        hits = sorted(fnmatch.filter(names, pattern))
        if hits:
            return hits[0]
    return None


@st.fragment(run_every=V.run_every(runs))
def draw() -> None:
    al = all_alerts()
    V.live_caption(runs)
    status = F.indicator_status(al, indicators)
    cols = st.columns(3)
    for i, row in status.iterrows():
        info = F.INDICATOR_INFO.get(row["indicator"], {})
        with cols[i % 3].container(border=True):
            st.markdown(f"**{info.get('title', row['indicator'])}** &nbsp; {BADGE[row['status']]}")
            if row["alerts"]:
                if pd.isna(row["first_step"]):
                    where = "info only"
                elif row["first_step"] == row["last_step"]:
                    where = f"at step {int(row['first_step'])}"
                else:
                    where = f"steps {int(row['first_step'])} – {int(row['last_step'])}"
                st.caption(f"{row['alerts']} alert(s), {where}. Last: {row['last_message']}")
            st.caption(f"{info.get('text', '')} _{info.get('source', '')}_")

    st.subheader("Timeline")
    if al.empty:
        st.success("No alerts raised in the selected runs.", icon=":material/check_circle:")
    else:
        fig = F.alert_timeline_figure(al, log_x=S["log_x"])
        table = al[["run", "step", "indicator", "severity", "layer", "message", "evidence"]].copy()
        table["evidence"] = [V.short_json(e).replace("\n", " ") for e in table["evidence"]]
        V.chart(fig, table, key="col_timeline", file_name="alerts.csv")


draw()

if not alerts.empty:
    st.subheader("Alert detail")
    sev_rank = alerts["severity"].map(F.SEVERITY_RANK).fillna(0)
    order = alerts.assign(_r=sev_rank).sort_values(["_r", "step"], ascending=[False, False])
    labels = {
        f"{a['run']} · step {a['step']} · {a['indicator']} ({a['severity']})"
        + (f" · {a['layer']}" if isinstance(a["layer"], str) else "")
        + f" · #{a['id']}": i
        for i, a in order.iterrows()
    }
    pick = st.selectbox(
        "Alert",
        list(labels),
        key="col_alert",
        help="Most severe and most recent first.",
        **V.URL,
    )
    a = alerts.loc[labels[pick]]
    run = next(r for r in runs if r.rel == a["run"])
    c1, c2 = st.columns([3, 2])
    with c1:
        metric = series_metric(run, a)
        if metric is None:
            st.caption("No logged series matches this indicator.")
        else:
            df = D.scalars(run, [metric])
            layer = a["layer"] if isinstance(a["layer"], str) else None
            if df["layer"].notna().any():
                df = df[df["layer"].notna()]
                series = df["layer"].astype(object)
            else:
                series = pd.Series(metric, index=df.index)
            frame = pd.DataFrame(
                {
                    "series": series.to_numpy(),
                    "step": df["step"].to_numpy(),
                    "value": F.convert_units(df["value"].to_numpy(), metric, S["unit"]),
                }
            )
            same = alerts[(alerts["run"] == a["run"]) & (alerts["indicator"] == a["indicator"])]
            marks = [
                (float(s), F.SEVERITY_COLORS.get(sev, "#888"), "")
                for s, sev in zip(same["step"], same["severity"])
                if s != a["step"]
            ] + [(float(a["step"]), F.SEVERITY_COLORS.get(a["severity"], "#888"), a["severity"])]
            fig = F.line_figure(
                frame,
                smoothing=S["smoothing"],
                log_x=S["log_x"],
                log_y=S["log_y"],
                max_points=S["max_points"],
                y_title=f"{metric}{F.unit_suffix(metric, S['unit'])}",
                highlight=[layer] if layer else None,
                marks=marks,
                title=f"{metric} — {run.rel}",
            )
            V.chart(fig, frame, key="col_series", file_name=f"{a['indicator']}_series.csv")
    with c2:
        st.markdown(f"**{a['message']}**")
        info = F.INDICATOR_INFO.get(a["indicator"], {})
        if info:
            st.caption(f"{info['text']} _{info['source']}_")
        st.markdown("Evidence")
        st.json(a["evidence"] if isinstance(a["evidence"], dict) else {}, expanded=True)

failures = []
for r in runs:
    ev = D.events(r)
    if not ev.empty:
        failures.append(ev.assign(run=r.rel))
if failures:
    st.subheader("Events")
    ev = pd.concat(failures, ignore_index=True)
    ev["detail"] = [V.short_json(d).replace("\n", " ") for d in ev["detail"]]
    st.dataframe(ev[["run", "step", "kind", "source", "message", "detail"]], hide_index=True)
