"""`infoscope import-csv`: a plain training log (CSV, TSV, JSONL, JSON) as a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from diagnostics.cli.base import CLIError, Handler, add_run_output_options, command, one_line


@command("import-csv", help="import a CSV / JSONL training log (one row per step) as a run")
def _import_csv(p: argparse.ArgumentParser) -> Handler:
    p.description = (
        "Import a table with one row per step (.csv, .tsv, .jsonl, .ndjson, or .json: a list "
        "of objects or a Hugging Face trainer_state.json). Every numeric column is a metric; "
        "known names (verl, TRL) get infoscope's names; the collapse detectors are replayed."
    )
    p.add_argument("file", type=Path, help="the log file")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=METRIC",
        help="also write COLUMN as METRIC (repeatable)",
    )
    p.add_argument(
        "--step-column",
        help="the column holding the step (default: step, global_step, _step, Step, "
        "iteration or iter; else the row number)",
    )
    add_run_output_options(p, what="the log")

    def run(args: argparse.Namespace) -> int:
        from diagnostics.offline.names import parse_map
        from diagnostics.offline.tables import import_table
        from diagnostics.runlog import RunLogError

        try:
            imported = import_table(
                args.file,
                args.out,
                mapping=parse_map(args.map),
                step_column=args.step_column,
                overwrite=args.overwrite,
                rl=args.rl,
                progress=False if args.quiet else None,
            )
        except (ValueError, RunLogError, ImportError, OSError) as exc:
            raise CLIError(one_line(exc)) from None
        print(imported.describe())
        print(f"view: infoscope dashboard {args.out.parent}")
        return 0

    return run
