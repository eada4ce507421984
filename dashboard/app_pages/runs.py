"""Runs: every run below the root with its state, steps, metrics and alert counts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data as D
from dashboard import stories
from dashboard import view as V
from dashboard.report import download_button

st.title("Runs")
base = D.root()
if not base.is_dir():
    st.error(
        f"The runs folder **{base}** does not exist. Start the dashboard on a folder of runs: "
        "`infoscope dashboard PATH` (or `streamlit run app.py -- --root PATH`)."
    )
    st.stop()

table = D.run_summaries(str(base))
if table.empty:
    V.no_runs_message(base)
    st.stop()

STATUS = {
    "running": "● running",
    "finished": "finished",
    "stale": "stale (writer gone)",
    "failed": "failed",
    "unreadable": "unreadable",
}
show = pd.DataFrame(
    {
        "run": table["run"],
        "shows": stories.story_column(base, table["run"]),
        "name": table["name"],
        "status": [STATUS.get(s, s) for s in table["status"]],
        "steps": [
            "" if pd.isna(lo) else f"{int(lo)} – {int(hi)}"
            for lo, hi in zip(table["first_step"], table["last_step"])
        ],
        "rows": table["rows"],
        "metrics": table["metrics"],
        "alerts": table["alerts"],
        "warnings": table["warnings"],
        "critical": table["critical"],
        "probe failures": table["failures"],
        "created": table["created"],
    }
)
n_bad = int(table["error"].notna().sum())
st.caption(
    f"{len(table)} run(s) below `{base}`"
    + (f", {n_bad} unreadable (see below)" if n_bad else "")
    + ". Pick runs in the sidebar; the other pages show the picked runs."
)
st.dataframe(
    show,
    hide_index=True,
    key="runs_table",
    column_config={
        "shows": st.column_config.TextColumn("what it shows", width="large"),
        "rows": st.column_config.NumberColumn("rows", format="%d"),
        "alerts": st.column_config.NumberColumn("alerts", format="%d"),
        "warnings": st.column_config.NumberColumn("⚠ warnings", format="%d"),
        "critical": st.column_config.NumberColumn("✖ critical", format="%d"),
    },
)
st.download_button(
    "Download CSV",
    data=lambda: show.to_csv(index=False).encode(),
    file_name="runs.csv",
    mime="text/csv",
    on_click="ignore",
    icon=":material/download:",
    type="tertiary",
    key="runs_csv",
)

for _, row in table[table["error"].notna()].iterrows():
    st.error(f"**{row['run']}** cannot be read: {row['error']}", icon=":material/error:")

runs = D.selected_runs()
if not runs:
    st.info("Pick one or more runs in the sidebar to see their details.")
    st.stop()

st.subheader("Selected runs")
for run in runs:
    if not run.ok:
        continue  # already reported above
    meta = run.meta or {}
    with st.expander(
        f"**{run.rel}** — {meta.get('name', run.rel)} · {run.status}", expanded=len(runs) == 1
    ):
        metrics = D.metric_names(run)
        st.markdown(stories.story(meta, metrics))
        c1, c2, c3 = st.columns(3)
        c1.metric("status", run.status)
        row = table[table["run"] == run.rel]
        if not row.empty and pd.notna(row["first_step"].iloc[0]):
            c2.metric(
                "steps", f"{int(row['first_step'].iloc[0])} – {int(row['last_step'].iloc[0])}"
            )
        c3.metric("metrics", len(metrics))
        st.markdown(
            f"created {meta.get('created', '?')} · host `{meta.get('host', '?')}` · "
            f"git `{str(meta.get('git_commit') or '–')[:10]}` · infoscope "
            f"{meta.get('infoscope_version', '?')}"
        )
        download_button(run.path, key=f"report_{run.rel}")
        groups: dict[str, list[str]] = {}
        for m in metrics:
            groups.setdefault(m.split("/")[0], []).append(m)
        st.markdown(
            "\n".join(f"- **{g}**: " + ", ".join(f"`{m}`" for m in ms) for g, ms in groups.items())
            or "_no scalar metrics logged yet_"
        )
        if meta.get("config"):
            st.markdown("**config**")
            st.json(meta["config"], expanded=False)
        if meta.get("model_summary"):
            st.markdown("**model**")
            st.code(str(meta["model_summary"]), language=None)
