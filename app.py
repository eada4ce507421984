"""infoscope dashboard (first version): runs below a folder and their scalar series.

streamlit run app.py -- --root sample_runs
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import plotly.express as px
import streamlit as st

from diagnostics.runlog import RunLogError, open_run, summarize_runs


def _root() -> Path:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=os.environ.get("INFOSCOPE_ROOT", "sample_runs"))
    args, _ = parser.parse_known_args()
    return Path(args.root)


st.set_page_config(page_title="infoscope", layout="wide")
root = _root()
st.title("infoscope")
if not root.is_dir():
    st.info(f"No runs folder at {root}. Start one with `infoscope dashboard PATH`.")
    st.stop()
table = summarize_runs(root)
if table.empty:
    st.info(
        f"No runs below {root}. Write one with `diagnostics.RunWriter` or attach `probes.Monitor`."
    )
    st.stop()
st.dataframe(table.drop(columns=["error"]), hide_index=True)
for _, row in table[table["error"].notna()].iterrows():
    st.warning(f"{row['run']}: {row['error']}")
readable = table[table["error"].isna()]
run = st.selectbox("Run", readable["run"].tolist())
if run:
    try:
        with open_run(run) as reader:
            df = reader.scalars()
    except RunLogError as exc:
        st.error(str(exc))
        st.stop()
    metric = st.selectbox("Metric", sorted(df["metric"].unique()))
    sub = df[df["metric"] == metric].copy()
    sub["layer"] = sub["layer"].astype(object).fillna("(model)")
    st.plotly_chart(px.line(sub, x="step", y="value", color="layer", title=metric))
