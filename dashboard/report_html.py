"""The markup of the HTML report (:mod:`dashboard.report`): the page around the figures, its
style sheet, and the tables of metadata and alerts, every text escaped."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from dashboard.figures.alerts import SEVERITY_COLORS
from diagnostics._version import __version__

#: plotly options of every figure: no plotly logo; resize with the page
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
#: the plotly template of every figure
TEMPLATE = "plotly"
#: meta keys shown in the facts table or their own block (the rest go to "Other metadata")
_SHOWN_META = {
    "schema_version",
    "name",
    "created",
    "config",
    "model_summary",
    "git_commit",
    "infoscope_version",
    "status",
    "updated",
    "pid",
    "host",
    "detector_context",
}
_MAX_EVENTS = 50
_MAX_JSON = 4000

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #dde2ea; --bg: #f7f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: #fff; }
header { padding: 24px 32px 8px; border-bottom: 1px solid var(--line); background: var(--bg); }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 36px 0 12px; font-size: 21px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { margin: 24px 0 8px; font-size: 17px; }
h4 { margin: 0 0 4px; font-size: 15px; }
.sub, .caption, .muted { color: var(--muted); font-size: 13px; }
nav { margin: 10px 0 6px; display: flex; flex-wrap: wrap; gap: 6px 16px; }
nav a { color: #1f5fbf; text-decoration: none; font-size: 14px; }
main { padding: 0 32px 32px; max-width: 1280px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 10px; overflow: auto;
      font-size: 12.5px; max-height: 420px; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--muted); }
.fig { margin: 8px 0 20px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
        gap: 0 24px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff;
         font-size: 12.5px; font-weight: 600; }
.alert { border: 1px solid var(--line); border-left: 5px solid var(--sev, #888);
         border-radius: 4px; padding: 10px 14px; margin: 12px 0; }
footer { padding: 16px 32px 32px; color: var(--muted); font-size: 13px;
         border-top: 1px solid var(--line); }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def paragraph(text: str) -> str:
    return f'<p class="muted">{esc(text)}</p>'


def subsection(title: str, intro: str, body: str) -> str:
    return f"<h3>{esc(title)}</h3>{paragraph(intro) if intro else ''}{body}"


def grid(parts: list[str]) -> str:
    """Charts side by side, as many columns as the page is wide enough for."""
    return f'<div class="grid">{"".join(parts)}</div>'


def badge(severity: str) -> str:
    color = SEVERITY_COLORS.get(severity, "#7f7f7f")
    return f'<span class="badge" style="background:{color}">{esc(severity)}</span>'


def _json(value: Any) -> str:
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    return text if len(text) <= _MAX_JSON else text[: _MAX_JSON - 1] + "…"


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return f"<code>{esc(json.dumps(value, default=str, ensure_ascii=False))}</code>"
    return esc(value)


def key_value_table(items: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{_cell(v)}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def frame_table(frame: pd.DataFrame, *, numeric: tuple[str, ...] = ()) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row):
            cls = ' class="num"' if col in numeric else ""
            shown = "" if value is None or (isinstance(value, float) and pd.isna(value)) else value
            cells.append(f"<td{cls}>{_cell(shown)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ------------------------------------------------------------------------------ blocks
def overview(
    meta: Mapping[str, Any],
    *,
    folder: str,
    summary: Mapping[str, Any],
    metrics: list[str],
    events: pd.DataFrame,
) -> str:
    """The run's facts, configuration, model, detector context, other metadata and events."""
    first, last = summary.get("first_step"), summary.get("last_step")
    facts = {
        "name": meta.get("name", folder),
        "folder": folder,
        "status": summary.get("status", meta.get("status", "unknown")),
        "created": meta.get("created", "?"),
        "steps": "none logged" if first is None else f"{first} – {last}",
        "scalar rows": f"{summary.get('rows', 0):,}",
        "metrics": len(metrics),
        "alerts": f"{summary.get('alerts', 0)} ({summary.get('warnings', 0)} warning, "
        f"{summary.get('critical', 0)} critical)",
        "probe failures": summary.get("failures", 0),
        "git commit": meta.get("git_commit") or "–",
        "host": meta.get("host", "?"),
        "written by": f"infoscope {meta.get('infoscope_version', '?')} (run-log schema "
        f"{meta.get('schema_version', '?')})",
    }
    parts = [key_value_table(facts)]
    config = meta.get("config")
    if config:
        parts.append("<h3>Configuration</h3>")
        parts.append(
            key_value_table(config) if isinstance(config, Mapping) else f"<pre>{esc(config)}</pre>"
        )
    if meta.get("model_summary"):
        parts.append(f"<h3>Model</h3><pre>{esc(meta['model_summary'])}</pre>")
    context = meta.get("detector_context")
    if isinstance(context, Mapping):
        parts.append("<h3>Detector context</h3>")
        parts.append(
            paragraph(
                "What the collapse detectors knew of this run (classes, label entropy, output "
                "layers, layer order); a replay of the run judges with the same."
            )
        )
        parts.append(key_value_table(context))
    other = {k: v for k, v in meta.items() if k not in _SHOWN_META}
    if other:
        parts.append("<h3>Other metadata</h3>")
        parts.extend(
            f"<details><summary>{esc(k)}</summary><pre>{esc(_json(v))}</pre></details>"
            for k, v in other.items()
        )
    if not events.empty:
        shown = events.head(_MAX_EVENTS)[["step", "kind", "source", "message"]]
        more = f" (the first {_MAX_EVENTS} of {len(events)})" if len(events) > _MAX_EVENTS else ""
        parts.append(f"<h3>Events{more}</h3>")
        parts.append(frame_table(shown, numeric=("step",)))
    return "".join(parts)


def severity_counts(counts: Mapping[str, int], total: int) -> str:
    shown = " ".join(f"{badge(s)} {n}" for s, n in counts.items() if n)
    return f"<p>{total} alert(s): {shown}</p>"


def alert_table(alerts: pd.DataFrame, titles: Mapping[str, str], *, total: int) -> str:
    rows = []
    for _, a in alerts.iterrows():
        layer = a["layer"] if isinstance(a["layer"], str) else "–"
        rows.append(
            f"<tr><td class='num'>{esc(a['step'])}</td><td>{badge(str(a['severity']))}</td>"
            f"<td>{esc(titles.get(a['indicator'], a['indicator']))}</td><td>{esc(layer)}</td>"
            f"<td>{esc(a['message'])}</td></tr>"
        )
    more = (
        paragraph(f"The first {len(alerts)} of {total} alerts by step.")
        if total > len(alerts)
        else ""
    )
    return (
        "<table><thead><tr><th>step</th><th>severity</th><th>indicator</th><th>layer</th>"
        f"<th>message</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
    )


def evidence_block(alert: pd.Series, *, title: str, about: str, figure: str) -> str:
    severity = str(alert["severity"])
    layer = f" · layer {esc(alert['layer'])}" if isinstance(alert["layer"], str) else ""
    ev = alert["evidence"] if isinstance(alert["evidence"], Mapping) else {}
    rule = f'<p class="muted">rule: <code>{esc(ev["rule"])}</code></p>' if ev.get("rule") else ""
    color = SEVERITY_COLORS.get(severity, "#7f7f7f")
    return (
        f'<div class="alert" style="--sev:{color}"><h4>{esc(title)} {badge(severity)} '
        f"at step {esc(alert['step'])}{layer}</h4><p>{esc(alert['message'])}</p>{rule}"
        f'<p class="caption">{esc(about)}</p>{figure}'
        f"<details><summary>evidence (JSON)</summary><pre>{esc(_json(ev))}</pre></details></div>"
    )


# ------------------------------------------------------------------------------ document
class Document:
    """Sections of a report and its figures (numbered ``fig-1``, ``fig-2``... in page order,
    so the same run gives the same bytes), rendered around one inlined plotly.js."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, str, str]] = []
        self.n_figures = 0

    def figure(self, fig: go.Figure, *, caption: str = "") -> str:
        self.n_figures += 1
        # plotly's own look whatever the process's default is (Streamlit replaces it)
        fig.layout.template = pio.templates[TEMPLATE]
        div = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"fig-{self.n_figures}",
            config=PLOT_CONFIG,
            validate=False,
        )
        note = f'<div class="caption">{esc(caption)}</div>' if caption else ""
        return f'<div class="fig">{div}{note}</div>'

    def section(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def render(self, *, title: str, generated: str, not_drawn: list[str], unit: str) -> str:
        nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in self.sections)
        body = "".join(
            f'<section id="{a}"><h2>{esc(t)}</h2>{b}</section>' for a, t, b in self.sections
        )
        rest = (
            f"<p>Also logged, not drawn here: {', '.join(f'<code>{esc(m)}</code>' for m in not_drawn)}. "
            "The dashboard shows every metric (<code>infoscope dashboard</code>).</p>"
            if not_drawn
            else ""
        )
        plotly = (  # once for every figure; none without figures
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n' if self.n_figures else ""
        )
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="infoscope {esc(__version__)}">\n'
            f"<title>infoscope report: {esc(title)}</title>\n<style>{CSS}</style>\n"
            f"{plotly}</head>\n<body>\n"
            f"<header><h1>{esc(title)}</h1>"
            f'<p class="sub">infoscope report · generated <time>{esc(generated)}</time> · '
            f"information quantities in {esc(unit)} · hover a chart for exact values, drag to "
            f"zoom, double-click to reset</p><nav>{nav}</nav></header>\n"
            f"<main>{body}</main>\n"
            f"<footer>{rest}<p>Written by infoscope {esc(__version__)} from the run log; "
            "lines are downsampled for drawing (each bucket keeps its first, last, minimum and "
            "maximum point, so spikes stay visible). This file needs no server and no "
            "network.</p></footer>\n</body>\n</html>\n"
        )
