"""One run as a single self-contained HTML file to share (``infoscope report`` and the
dashboard's download button): its metadata, alerts with their evidence, the information
plane and the training, representation and entropy curves, drawn by the dashboard's figure
builders.

The file needs no network and no server to open: plotly.js is inlined once in the page head
and each figure is a ``<div>`` with a ``Plotly.newPlot`` call on data already downsampled here
(at most :data:`MAX_POINTS` points per line, min/max per bucket so spikes survive; at most
:data:`MAX_LINES` layers per chart), so a long run still gives a file of a few megabytes,
most of it plotly.js itself (about 4.8 MB). Sections appear only for what the run logged.
Reads the run through :mod:`diagnostics.runlog`; imports Streamlit only inside
:func:`download_button`, and never torch. The page markup is in
:mod:`dashboard.report_html`.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard import figures as F
from dashboard import report_html as H
from dashboard.figures.common import series_order
from diagnostics import schema
from diagnostics.runlog import RunLogError, list_runs, open_run

__all__ = [
    "MAX_EVIDENCE",
    "MAX_LINES",
    "MAX_POINTS",
    "ReportError",
    "build_report",
    "default_file_name",
    "download_button",
    "write_report",
]

#: points per drawn line (a chart is a few hundred pixels wide)
MAX_POINTS = 400
#: layers per chart; more are thinned to this many, evenly spaced in depth
MAX_LINES = 12
#: alerts drawn with their evidence (the first of each indicator, layer and severity)
MAX_EVIDENCE = 24
#: rows of the alert table
MAX_ALERT_ROWS = 1000
#: charts of series outside the known families (an imported log's own names), by name
MAX_OTHER = 24

TRAINING_PREFIXES = ("train/", "val/", "eval/", "test/")
TRAINING_EXACT = ("rl/reward", "rl/kl", "rl/response_length")
#: the Representations page's metrics, in its order (then any other of these prefixes)
REPR_KNOWN = F.REPRESENTATION_METRICS
REPR_PREFIXES = F.REPRESENTATION_PREFIXES
TOKEN_ENTROPY = tuple(f"lm/token_entropy/{q}" for q in ("mean", *F.QUANTILE_COLUMNS))
#: language-model charts: one chart per tuple (several metrics of one unit share a chart)
LM_CHARTS = (
    ("lm/topk_entropy", "lm/topk_entropy_renorm"),
    ("lm/topk_mass",),
    ("lm/sum_p2",),
    ("lm/perplexity",),
    ("lm/logprob",),
    ("rl/completion_entropy", "rl/answer_entropy"),
    ("rl/cov/pos_share",),
    ("rl/cov/mean",),
)
ATTENTION = ("attn/entropy", "attn/entropy_norm")


class ReportError(ValueError):
    """Bad input to a report (not a run, an output that exists): one line naming the file."""


# ------------------------------------------------------------------------------ reading
def _open(run: str | os.PathLike):
    """``open_run(run)``, with a hint when ``run`` is a folder of runs rather than one."""
    path = Path(run)
    try:
        return open_run(path)
    except RunLogError as exc:
        hint = ""
        if path.is_dir() and not (path / schema.DB_FILENAME).exists():
            try:
                inner = [p.relative_to(path).as_posix() for p in list_runs(path)]
            except (RunLogError, OSError):
                inner = []
            if inner:
                shown = ", ".join(inner[:3]) + (", ..." if len(inner) > 3 else "")
                hint = f"; it is a folder of {len(inner)} run(s), pick one: {shown}"
        raise ReportError(f"RUN: {exc}{hint}") from None


def _per_head(metric: str) -> bool:
    """``attn/entropy/h{H}``-style per-head series (the attention charts show their mean)."""
    return metric.startswith(("attn/entropy/h", "attn/entropy_norm/h"))


# ------------------------------------------------------------------------------ frames
def _tidy(rows: pd.DataFrame, metrics: Iterable[str], unit: str) -> tuple[pd.DataFrame, str]:
    """Rows of ``metrics`` as a ``series, step, value`` frame for :func:`line_figure`:
    one series per layer for a per-layer metric (at most :data:`MAX_LINES`, evenly spaced),
    one per metric otherwise; and a note on thinned layers ("" if none)."""
    metrics = list(metrics)
    sub = rows[rows["metric"].isin(metrics)]
    if sub.empty:
        return pd.DataFrame(columns=["series", "step", "value"]), ""
    per_layer = len(metrics) == 1 and sub["layer"].notna().any()
    parts = []
    note = ""
    if per_layer:
        layers = series_order(sub["layer"].astype(object))
        if len(layers) > MAX_LINES:
            keep = np.unique(np.linspace(0, len(layers) - 1, MAX_LINES).round().astype(int))
            note = f"{MAX_LINES} of {len(layers)} layers, evenly spaced in depth"
            layers = [layers[i] for i in keep]
        by_layer = sub["layer"].astype(object)
        for layer in layers:
            part = sub[by_layer == layer]
            parts.append((str(layer), part, metrics[0]))
        model = sub[sub["layer"].isna()]
        if not model.empty:
            parts.append(("whole model", model, metrics[0]))
    else:
        for m in metrics:
            part = sub[(sub["metric"] == m) & sub["layer"].isna()]
            if not part.empty:
                parts.append((m, part, m))
    frames = [
        pd.DataFrame(
            {
                "series": label,
                "step": part["step"].to_numpy(),
                "value": F.convert_units(part["value"].to_numpy(dtype=np.float64), m, unit),
            }
        )
        for label, part, m in parts
    ]
    if not frames:
        return pd.DataFrame(columns=["series", "step", "value"]), ""
    frame = pd.concat(frames, ignore_index=True)
    frame["series"] = pd.Categorical(frame["series"], categories=[p[0] for p in parts])
    return frame, note


def _line_chart(doc: H.Document, rows: pd.DataFrame, metrics: tuple[str, ...], unit: str) -> str:
    frame, note = _tidy(rows, metrics, unit)
    if frame.empty:
        return ""
    title = " and ".join(metrics)
    fig = F.line_figure(
        frame,
        max_points=MAX_POINTS,
        title=title,
        y_title=f"{metrics[0].rsplit('/', 1)[-1]}{F.unit_suffix(metrics[0], unit)}",
        height=360,
        legend_below=True,
    )
    fig.update_layout(showlegend=frame["series"].nunique() > 1)
    return doc.figure(fig, caption=note)


# ------------------------------------------------------------------------------ alerts
def _logged(rows: pd.DataFrame, metric: str | None, layer: str | None) -> pd.DataFrame | None:
    """``step, value`` of ``metric``: its rows of ``layer`` if it logged any, else its
    whole-model rows (as the Collapse page draws an alert's series)."""
    if metric is None:
        return None
    sub = rows[rows["metric"] == metric]
    mine = sub[sub["layer"] == layer] if layer is not None else sub.iloc[:0]
    sub = mine if len(mine) else sub[sub["layer"].isna()]
    return sub[["step", "value"]].sort_values("step", kind="stable")


def _alerts_section(
    doc: H.Document, alerts: pd.DataFrame, rows: pd.DataFrame, metrics: list[str], unit: str
) -> None:
    rank = alerts["severity"].map(F.SEVERITY_RANK).fillna(0)
    counts = {s: int((alerts["severity"] == s).sum()) for s in reversed(schema.SEVERITIES)}
    parts = [H.severity_counts(counts, len(alerts))]
    parts.append(doc.figure(F.alert_timeline_figure(alerts)))
    shown = alerts.assign(_rank=rank).sort_values(["step", "id"], kind="stable")
    titles = {k: str(v.get("title", k)) for k, v in F.INDICATOR_INFO.items()}
    parts.append(H.alert_table(shown.head(MAX_ALERT_ROWS), titles, total=len(alerts)))

    firsts = (
        shown.sort_values(["_rank", "step", "id"], ascending=[False, True, True], kind="stable")
        .drop_duplicates(subset=["indicator", "layer", "severity"])
        .head(MAX_EVIDENCE)
    )
    n_groups = len(shown.drop_duplicates(subset=["indicator", "layer", "severity"]))
    blocks = []
    for _, alert in firsts.iterrows():
        metric = F.evidence_metric(alert, metrics)
        layer = alert["layer"] if isinstance(alert["layer"], str) else None

        related = {
            m: _logged(rows, m, layer) for m in F.read_evidence(alert["evidence"])["related"]
        }
        fig = F.alert_explanation_figure(
            alert["evidence"],
            step=float(alert["step"]),
            message=str(alert["message"]),
            severity=str(alert["severity"]),
            metric=metric,
            layer=layer,
            history=_logged(rows, metric, layer),
            related_history={m: h for m, h in related.items() if h is not None and len(h)},
            unit=unit,
            max_points=MAX_POINTS,
        )
        info = F.INDICATOR_INFO.get(alert["indicator"], {})
        blocks.append(
            H.evidence_block(
                alert,
                title=titles.get(alert["indicator"], alert["indicator"]),
                about=f"{info.get('text', '')} {info.get('source', '')}".strip(),
                figure=doc.figure(fig) if fig is not None else "",
            )
        )
    intro = (
        "The first alert of each indicator, layer and severity, most severe first: the "
        "series the rule read, the threshold it crossed and the step where it fired."
    )
    if n_groups > len(firsts):
        intro += f" {len(firsts)} of {n_groups} are drawn; the table above lists every alert."
    parts.append(H.subsection("Evidence", intro, "".join(blocks)))
    doc.section("alerts", f"Alerts ({len(alerts)})", "".join(parts))


# ------------------------------------------------------------------------------ report
def build_report(
    run: str | os.PathLike, *, unit: str = "bits", generated: dt.datetime | None = None
) -> str:
    """The report of ``run`` (a run folder or its ``run.sqlite``) as one HTML document.

    Information quantities are shown in ``unit`` (``bits`` or ``nats``; they are logged in
    nats). ``generated``: the time written in the page (default: now, UTC); the rest of the
    document depends on the run's contents only. Raises :class:`ReportError` if ``run`` is
    not a readable run.
    """
    if unit not in ("bits", "nats"):
        raise ValueError(f"unit: expected 'bits' or 'nats', got {unit!r}")
    with _open(run) as reader:
        meta = dict(reader.meta)
        summary = reader.summary()
        metrics = reader.metrics()
        alerts = reader.alerts()
        events = reader.events()
        wanted = {m for m in metrics if not _per_head(m)}
        wanted |= {
            m for _, a in alerts.iterrows() if (m := F.evidence_metric(a, metrics)) in metrics
        }
        rows = reader.scalars(metrics=sorted(wanted))
        run_dir = reader.run_dir
    rows = rows.assign(metric=rows["metric"].astype(object), layer=rows["layer"].astype(object))
    present = set(rows["metric"].unique())
    doc = H.Document()
    drawn: set[str] = set()

    doc.section(
        "overview",
        "Run",
        H.overview(
            meta,
            folder=run_dir.resolve().name,
            summary=summary,
            metrics=metrics,
            events=events,
        ),
    )
    if not alerts.empty:
        _alerts_section(doc, alerts, rows, metrics, unit)

    training = [m for m in metrics if m.startswith(TRAINING_PREFIXES) or m in TRAINING_EXACT]
    by_name: dict[str, list[str]] = {}
    for m in training:  # train/loss and val/loss share a chart
        key = m.split("/", 1)[1] if m.startswith(TRAINING_PREFIXES) else m
        by_name.setdefault(key, []).append(m)
    charts = [_line_chart(doc, rows, tuple(ms), unit) for ms in by_name.values()]
    if any(charts):
        drawn.update(training)
        doc.section("training", "Training", H.grid(charts))

    estimators = F.info_plane_estimators(present)
    if estimators:
        figs = []
        for est in estimators:
            frame = F.info_plane_frame(rows, est, unit=unit)
            figs.append(
                doc.figure(
                    F.info_plane_figure(
                        {f"{meta.get('name', run_dir.name)} · {est}": frame}, unit=unit
                    ),
                    caption=f"estimator {est}; marker colour: step",
                )
            )
            drawn.update({f"info_plane/{est}/I_XT", f"info_plane/{est}/I_TY"})
        doc.section(
            "information-plane",
            "Information plane",
            H.paragraph(
                f"I(X;T) against I(T;Y) per layer over training, in {unit} (Shwartz-Ziv & "
                "Tishby 2017; Saxe et al. 2018)."
            )
            + "".join(figs),
        )

    repr_metrics = [m for m in REPR_KNOWN if m in present]
    repr_metrics += sorted(
        m for m in present if m.startswith(REPR_PREFIXES) and m not in REPR_KNOWN
    )
    charts = [_line_chart(doc, rows, (m,), unit) for m in repr_metrics]
    if any(charts):
        drawn.update(repr_metrics)
        doc.section("representations", "Representations", H.grid(charts))

    lm_parts = []
    band = {q.rsplit("/", 1)[-1]: q for q in TOKEN_ENTROPY if q in present}
    if band:
        wide = (
            rows[rows["metric"].isin(band.values()) & rows["layer"].isna()]
            .pivot_table(index="step", columns="metric", values="value", aggfunc="last")
            .rename(columns={v: k for k, v in band.items()})
            .reset_index()
        )
        for col in band:
            wide[col] = F.convert_units(wide[col].to_numpy(dtype=np.float64), band[col], unit)
        fig = F.quantile_band_figure(
            {meta.get("name", run_dir.name): wide},
            max_points=MAX_POINTS,
            y_title=f"token entropy ({unit})",
        )
        lm_parts.append(doc.figure(fig, caption="token entropy: mean, median, q25-q75, q05-q95"))
        drawn.update(band.values())
    for chart in LM_CHARTS:
        have = tuple(m for m in chart if m in present)
        if have:
            lm_parts.append(_line_chart(doc, rows, have, unit))
            drawn.update(have)
    if any(lm_parts):
        doc.section("language-model", "Language model", H.grid(lm_parts))

    attn = [_line_chart(doc, rows, (m,), unit) for m in ATTENTION if m in present]
    if any(attn):
        drawn.update(m for m in ATTENTION if m in present)
        doc.section(
            "attention",
            "Attention entropy",
            H.paragraph("Mean over heads, per layer (Zhai et al. 2023).") + H.grid(attn),
        )

    other = [m for m in metrics if m not in drawn and not _per_head(m)][:MAX_OTHER]
    charts = [_line_chart(doc, rows, (m,), unit) for m in other]
    if any(charts):
        drawn.update(other)
        doc.section("other", "Other series", H.grid(charts))

    rest = [m for m in metrics if m not in drawn]
    generated = generated or dt.datetime.now(dt.timezone.utc)
    return doc.render(
        title=str(meta.get("name", run_dir.name)),
        generated=generated.isoformat(timespec="seconds"),
        not_drawn=rest,
        unit=unit,
    )


def report_bytes(run: str | os.PathLike, *, unit: str = "bits") -> bytes:
    """:func:`build_report` as UTF-8 bytes (what ``infoscope report`` writes)."""
    return build_report(run, unit=unit).encode("utf-8")


def default_file_name(run: str | os.PathLike) -> str:
    """``RUN_FOLDER.html``: the report's file name when none is given."""
    path = Path(run).resolve()
    if path.name == schema.DB_FILENAME:
        path = path.parent
    return f"{path.name or 'run'}.html"


def check_out(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an ``out`` that is a folder, or a file that exists (unless ``overwrite``)."""
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"--out: {out} is a folder; expected the name of the HTML file to write")
    if out.exists() and not overwrite:
        raise ReportError(f"--out: {out} already exists; choose another file or pass --overwrite")
    return out


def write_report(
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    unit: str = "bits",
) -> int:
    """Write the report of ``run`` to ``out`` all at once; return its size in bytes.

    The document is built in memory, written to a hidden temporary file beside ``out`` and
    renamed onto it, so a failure (not a run, a full disk, Ctrl-C) leaves ``out`` as it was
    and nothing half-written. Raises :class:`ReportError` for an ``out`` that is a folder or
    exists (unless ``overwrite``) and for a ``run`` that is not a run.
    """
    out = check_out(out, overwrite=overwrite)
    data = report_bytes(run, unit=unit)
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is for sharing
        check_out(out, overwrite=overwrite)  # nothing appeared there meanwhile
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def download_button(run_path: str | os.PathLike, *, key: str) -> None:
    """A Streamlit button that downloads the report of ``run_path`` (the bytes
    ``infoscope report`` writes), built only when clicked."""
    import streamlit as st

    path = Path(run_path)
    st.download_button(
        "Download report",
        data=lambda: report_bytes(path),
        file_name=default_file_name(path),
        mime="text/html",
        key=key,
        on_click="ignore",
        icon=":material/summarize:",
        help="One HTML file with this run's metadata, alerts and their evidence, and its "
        "charts; opens in any browser without a server or network "
        "(`infoscope report RUN` writes the same file).",
    )
