"""`infoscope runs`: a table of the runs below a folder (steps, status, alert counts)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from diagnostics.cli.base import CLIError, Handler, command, default_root


@command("runs", help="list the runs below a folder with step range and alert counts")
def _runs(p: argparse.ArgumentParser) -> Handler:
    p.add_argument(
        "root",
        nargs="?",
        type=Path,
        help="folder to search (default: ./runs, else the sample runs)",
    )
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")

    def run(args: argparse.Namespace) -> int:
        from diagnostics.runlog import RunLogError, summarize_runs

        root = args.root or default_root()
        try:
            table = summarize_runs(root)
        except RunLogError as exc:
            raise CLIError(str(exc)) from None
        if args.json:
            print(table.to_json(orient="records"))
            return 0
        if table.empty:
            print(f"no runs below {root} (a run is a folder holding run.sqlite)")
            return 0
        show = table.drop(columns=["error"]).copy()
        show["run"] = [os.path.relpath(r, root) for r in table["run"]]
        steps = [
            "" if lo != lo or lo is None else f"{int(lo)}-{int(hi)}"
            for lo, hi in zip(show.pop("first_step"), show.pop("last_step"))
        ]
        show.insert(3, "steps", steps)
        show = show.drop(columns=["created"])
        for col in ("rows", "metrics", "alerts", "warnings", "critical", "failures"):
            show[col] = show[col].astype("Int64")
        show = show.astype(object)
        show = show.where(show.notna(), "")
        print(show.to_string(index=False))
        for _, row in table[table["error"].notna()].iterrows():
            print(f"! {row['run']}: {row['error']}", file=sys.stderr)
        return 0

    return run
