"""The run log's schema: table layout, schema version and metric-name conventions.

One module, imported by both the writer and the reader (as TensorBoard keeps its
metadata/version module apart from writer and reader). Bump ``SCHEMA_VERSION`` on any
incompatible change; a reader refuses runs written by a newer version.

A run is a directory holding ``run.sqlite`` (SQLite, WAL mode while being written)
and an optional ``snapshots/`` folder.

Tables
------
``meta``           key -> JSON value: ``schema_version``, ``name``, ``created`` (ISO time),
                   ``config``, ``model_summary``, ``git_commit``, ``infoscope_version``,
                   ``status`` (``running`` / ``finished``), ``updated`` (unix time of the
                   last commit, a heartbeat for live runs), ``pid``, ``host``.
``names``          interned strings (metric and layer names) -> integer id.
``scalars``        ``id, step, wall_time, metric_id, layer_id (NULL = whole model), value``.
                   SQLite cannot store NaN (it turns it into NULL), so a NULL ``value`` is
                   NaN; +/-inf are stored as such.
``distributions``  ``id, step, wall_time, metric_id, layer_id, kind, data`` where ``kind``
                   is ``histogram`` (data: ``{"edges": [...], "counts": [...]}``) or
                   ``quantiles`` (data: ``{"q": [...], "values": [...]}``), data as JSON.
``alerts``         ``id, step, wall_time, indicator, severity, layer, message, evidence``
                   (severity ``info`` < ``warning`` < ``critical``; evidence JSON, see
                   "Alerts" below).
``events``         ``id, step, wall_time, kind, source, message, detail``: probe failures
                   and other things that happened to the run (``kind`` e.g.
                   ``probe_failure``), detail JSON.

Metric names
------------
Names are namespaced with slashes (``train/loss``); the ``layer`` column holds the
module's stable dotted name (``encoder.0``) or NULL for whole-model quantities. All
information quantities are stored in nats; the dashboard converts to bits.

- ``train/...``, ``val/...``: the user's own scalars (``train/loss``, ``train/acc``).
- ``info_plane/{estimator}/I_XT`` and ``info_plane/{estimator}/I_TY`` per layer, where
  ``estimator`` is the MI method name (``binning``, ``kde``, ``ksg``, ``compressed``...).
- ``repr/dse``, ``repr/dsmi_y`` (DSMI with the labels), ``repr/dsmi_x`` (with the inputs),
  ``repr/effective_rank``, ``repr/von_neumann``, ``repr/alpha_req`` per layer.
- ``act/mean``, ``act/std``, ``act/dead_frac``, ``act/saturated_frac`` per layer.
- ``grad/norm``, ``weight/norm`` per layer (or NULL for the whole model).
- ``lm/token_entropy/mean`` and ``lm/token_entropy/q05|q25|q50|q75|q95``,
  ``lm/topk_mass``, ``lm/topk_entropy``, ``lm/topk_entropy_renorm``, ``lm/sum_p2``,
  ``lm/logprob``, ``lm/perplexity``; distribution ``lm/token_entropy`` (histogram).
- ``rl/reward``, ``rl/cov/mean``, ``rl/cov/pos_share``, ``rl/completion_entropy``,
  ``rl/answer_entropy``, ``rl/fit/a``, ``rl/fit/b``, ``rl/fit/ceiling``; ``rl/kl`` (KL to the
  reference policy, as the trainer reports it) and ``rl/response_length`` (mean response
  length in tokens), mostly from imported training logs.
- ``attn/entropy`` and ``attn/entropy_norm`` per layer (mean over heads);
  ``attn/entropy/h{H}`` and ``attn/entropy_norm/h{H}`` per layer and head ``H``.
- ``probe/seconds``: wall time spent in probes at that step.

Alerts
------
Every detector writes the same record (:class:`diagnostics.detectors.Alert`) on one severity
scale: ``info`` marks a phase of training worth noting (compression onset), ``warning``
something a user should look at, ``critical`` a run that is failing. Runs written before
this scale called the top level ``collapsed``; readers show it as ``critical``.

The evidence (JSON) says what fired, so that a viewer can draw it without re-running the
detector: ``metric`` (the series the rule read), ``layer``, ``steps`` and ``values`` (that
series up to the alert, as the rule saw it), ``threshold`` (the line it crossed, in the
series' units, or null), ``direction`` (``below`` or ``above``: which side of the threshold
fires), ``rule`` (the condition in words), ``settings`` (the thresholds in force) and, for
rules over several series, ``related``: ``{metric: {"steps": [...], "values": [...]}}``.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
DB_FILENAME = "run.sqlite"
SNAPSHOTS_DIR = "snapshots"

#: alert severities, lowest first
SEVERITIES = ("info", "warning", "critical")
#: severity -> rank (higher is worse); ``collapsed`` is how runs before 0.2 named ``critical``
SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
LEGACY_SEVERITIES = {"collapsed": "critical"}
DISTRIBUTION_KINDS = ("histogram", "quantiles")

# Alert indicator names written by the collapse detectors.
INDICATORS = (
    "rank_collapse",
    "entropy_collapse",
    "saturation",
    "memorisation",
    "compression_onset",
    "token_entropy_collapse",
    "over_optimisation",
    "positive_covariance",
    "attention_collapse",
    "entropic_overload",
    "loss_divergence",
)

DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    """CREATE TABLE IF NOT EXISTS scalars (
        id INTEGER PRIMARY KEY,
        step INTEGER NOT NULL,
        wall_time REAL NOT NULL,
        metric_id INTEGER NOT NULL,
        layer_id INTEGER,
        value REAL
    )""",
    """CREATE TABLE IF NOT EXISTS distributions (
        id INTEGER PRIMARY KEY,
        step INTEGER NOT NULL,
        wall_time REAL NOT NULL,
        metric_id INTEGER NOT NULL,
        layer_id INTEGER,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alerts (
        id INTEGER PRIMARY KEY,
        step INTEGER NOT NULL,
        wall_time REAL NOT NULL,
        indicator TEXT NOT NULL,
        severity TEXT NOT NULL,
        layer TEXT,
        message TEXT NOT NULL,
        evidence TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        step INTEGER,
        wall_time REAL NOT NULL,
        kind TEXT NOT NULL,
        source TEXT,
        message TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
)

TABLES = ("meta", "names", "scalars", "distributions", "alerts", "events")
