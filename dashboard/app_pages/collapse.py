"""Collapse: a status card per indicator that raised alerts (one line names the others),
then two tabs: every alert on a timeline and in a table, and the alert picked (a card's
button, a timeline marker, a table row or the selector) explained: the series that fired,
its threshold and the step, drawn from the alert's evidence."""

from __future__ import annotations

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
TIMELINE, DETAIL = "Timeline", "Alert detail"  # the page's two tabs
COLUMNS = ["id", "step", "wall_time", "indicator", "severity", "layer", "message", "evidence"]

st.title("Collapse indicators")
runs = V.require_runs()
S = V.settings()


def all_alerts() -> pd.DataFrame:
    """Every selected run's alerts, most severe and most recent first, with ``key``
    (:func:`F.alert_key`) and ``label`` (the selector's text) per alert."""
    parts = [D.alerts(r).assign(run=r.rel) for r in runs]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=[*COLUMNS, "run", "key", "label"])
    al = pd.concat(parts, ignore_index=True)
    rank = al["severity"].map(F.SEVERITY_RANK).fillna(0)
    al = al.assign(_r=rank).sort_values(["_r", "step"], ascending=[False, False], kind="stable")
    al = al.drop(columns="_r").reset_index(drop=True)
    al["key"] = [F.alert_key(r, i) for r, i in zip(al["run"], al["id"])]
    al["label"] = [
        f"{a['run']} · step {a['step']} · {a['indicator']} ({a['severity']})"
        + (f" · {a['layer']}" if isinstance(a["layer"], str) else "")
        + f" · #{a['id']}"
        for _, a in al.iterrows()
    ]
    return al


def series_metric(run, alert) -> str | None:
    """The metric that shows ``alert`` in ``run``."""
    return F.evidence_metric(alert, D.metric_names(run))


def recorded(run, metric: str, layer: str | None) -> pd.DataFrame:
    """``step, value`` of ``metric`` in ``run``: the rows of ``layer`` if it logged any,
    else the whole-model rows."""
    if metric not in D.metric_names(run):
        return pd.DataFrame(columns=["step", "value"])
    df = D.scalars(run, [metric])
    rows = df[df["layer"] == layer] if layer is not None else df.iloc[:0]
    if rows.empty:
        rows = df[df["layer"].isna()]
    return rows[["step", "value"]]


def picked_now(al: pd.DataFrame, cards: dict, timeline, table) -> str | None:
    """The alert a click picked (a card's button in this run, or the ``timeline``'s and the
    ``table``'s selection states), or None. A selection counts once, when it changes."""
    for indicator, clicked in cards.items():
        if clicked:
            return al.loc[al["indicator"] == indicator, "key"].iloc[0]
    points = timeline["selection"]["points"] if timeline is not None else []
    rows = table["selection"]["rows"] if table is not None else []
    seen = st.session_state.get("_col_seen")
    now = (tuple(str(p.get("customdata")) for p in points), tuple(rows))
    st.session_state["_col_seen"] = now
    if seen is None or now == seen:
        return None
    if now[0] != seen[0] and points:
        data = points[0].get("customdata") or []
        if len(data) >= 5:
            return F.alert_key(data[3], data[4])
    if now[1] != seen[1] and rows and rows[0] < len(al):
        return al["key"].iloc[rows[0]]
    return None


def explain(al: pd.DataFrame, pick: str) -> None:
    """The alert labelled ``pick`` explained."""
    a = al[al["label"] == pick].iloc[0]
    run = next(r for r in runs if r.rel == a["run"])
    ev = F.read_evidence(a["evidence"])
    metric = series_metric(run, a)
    layer = ev["layer"] or (a["layer"] if isinstance(a["layer"], str) else None)
    c1, c2 = st.columns([3, 2])
    with c1:
        history = recorded(run, metric, layer) if metric else None
        related = {m: recorded(run, m, layer) for m in ev["related"]}
        fig = F.alert_explanation_figure(
            a["evidence"],
            step=float(a["step"]),
            message=a["message"],
            severity=a["severity"],
            metric=metric,
            layer=layer,
            history=history,
            related_history=related,
            unit=S["unit"],
            log_x=S["log_x"],
            max_points=S["max_points"],
        )
        frames = [] if history is None else [history.assign(metric=metric, layer=layer)]
        frames += [h.assign(metric=m, layer=layer) for m, h in related.items() if not h.empty]
        V.chart(
            fig,
            pd.concat(frames, ignore_index=True) if frames else None,
            key="col_explain",
            file_name=f"{a['indicator']}_series.csv",
        )
        if ev["legacy"]:
            st.caption(
                "This run was written before alerts recorded their threshold in the "
                "series' units: the series and the step are shown, the threshold is in the "
                "evidence only."
            )
    with c2:
        st.markdown(f"**{a['message']}**")
        info = F.INDICATOR_INFO.get(a["indicator"], {})
        if info:
            st.caption(f"{info['text']} _{info['source']}_")
        if ev["rule"]:
            st.markdown(f"Rule: `{ev['rule']}`")
        # in a popover: the browser draws the JSON viewer only when it is opened
        with st.popover("Evidence", icon=":material/data_object:"):
            st.json(a["evidence"] if isinstance(a["evidence"], dict) else {})


@st.fragment(run_every=V.run_every(runs))
def draw() -> None:
    al = all_alerts()
    indicators = list(schema.INDICATORS) + sorted(set(al["indicator"]) - set(schema.INDICATORS))
    V.live_caption(runs)
    status = F.indicator_status(al, indicators)
    cards = {}
    fired = status[status["status"] != "ok"].reset_index(drop=True)
    quiet = status[status["status"] == "ok"]
    cols = st.columns(3)
    for i, row in fired.iterrows():  # a card per indicator that raised alerts
        info = F.INDICATOR_INFO.get(row["indicator"], {})
        with cols[i % 3].container(border=True):
            st.markdown(f"**{info.get('title', row['indicator'])}** &nbsp; {BADGE[row['status']]}")
            if pd.isna(row["first_step"]):
                where = "info only"
            elif row["first_step"] == row["last_step"]:
                where = f"at step {int(row['first_step'])}"
            else:
                where = f"steps {int(row['first_step'])} – {int(row['last_step'])}"
            st.caption(f"{row['alerts']} alert(s), {where}. Last: {row['last_message']}")
            cards[row["indicator"]] = st.button(
                "Explain",
                key=f"col_card_{row['indicator']}",
                icon=":material/query_stats:",
                type="tertiary",
                help="Show the series that fired, its threshold and the step.",
            )
            st.caption(f"{info.get('text', '')} _{info.get('source', '')}_")
    # the indicators that raised nothing: one line (a card each made the page slow to draw)
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    if not quiet.empty:
        c1.markdown(
            f"{BADGE['ok']} &nbsp; no alerts: "
            + " · ".join(F.INDICATOR_INFO.get(i, {}).get("title", i) for i in quiet["indicator"])
        )
    with c2.popover("About the indicators", icon=":material/info:", width="stretch"):
        for ind in status["indicator"]:
            info = F.INDICATOR_INFO.get(ind, {})
            st.markdown(
                f"**{info.get('title', ind)}** — {info.get('text', '')} _{info.get('source', '')}_"
            )

    if al.empty:
        st.success("No alerts raised in the selected runs.", icon=":material/check_circle:")
        return
    linked = "col_alert" in st.query_params  # a link naming an alert opens on its detail
    # a click picked an alert (a card's button above, or a timeline marker or table row of
    # the run before, read from their state): that alert, explained in the detail tab
    key = picked_now(
        al, cards, st.session_state.get("col_timeline"), st.session_state.get("col_table")
    )
    if key is not None and key in set(al["key"]):
        st.session_state["col_alert"] = al.loc[al["key"] == key, "label"].iloc[0]
        st.session_state["col_tab"] = DETAIL
    # the alert explained, picked here too (above the tabs: it names the alert either way)
    pick = V.picker(
        st,
        "Alert",
        list(al["label"]),
        key="col_alert",
        help="Most severe and most recent first. Clicking a card's button, a timeline "
        "marker or a table row picks one too.",
        icon=":material/notifications:",
        on_change=lambda: st.session_state.update(col_tab=DETAIL),  # a pick: show it
    )
    # one tab drawn at a time (a second chart cost a page load ~0.1 s)
    timeline_tab, detail_tab = st.tabs(
        [TIMELINE, DETAIL],
        default=DETAIL if linked else TIMELINE,
        key="col_tab",
        on_change="rerun",
        bind="query-params",
    )
    if timeline_tab.open:
        with timeline_tab:
            timeline(al)
    if detail_tab.open:
        with detail_tab:
            explain(al, pick)


def timeline(al: pd.DataFrame) -> None:
    """Every alert on a timeline (a marker picks it) and in a table (a row picks it)."""
    st.caption(
        "Click a marker, a row of the alert table or a card's Explain to explain that alert."
    )
    fig = F.alert_timeline_figure(al, log_x=S["log_x"])
    table = al[["severity", "step", "indicator", "layer", "run", "message"]]
    V.chart(
        fig,
        table.assign(evidence=[V.short_json(e).replace("\n", " ") for e in al["evidence"]]),
        key="col_timeline",
        file_name="alerts.csv",
        on_select="rerun",
        selection_mode="points",
    )
    # the table in a popover: the browser loads and draws its data grid only when it is
    # opened (the grid alone cost the page about 0.1 s to draw)
    with st.popover(f"Alert table ({len(table)})", icon=":material/table_rows:"):
        st.dataframe(
            table,
            hide_index=True,
            key="col_table",
            on_select="rerun",
            selection_mode="single-row",
            height=min(400, 38 + 35 * len(table)),
            width=1000,
        )


draw()

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
