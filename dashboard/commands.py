"""The dashboard package's commands: `infoscope dashboard` (start the Streamlit dashboard on a
runs folder) and `infoscope report` (one run as a self-contained HTML file).

Plugin commands: the CLI imports this module through the ``infoscope.commands`` entry
point (see pyproject.toml), so that ``diagnostics`` never imports the dashboard. Each
handler imports what it needs when it runs, so ``infoscope --help`` stays quick.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from dashboard.serve import server_env, streamlit_command
from diagnostics.cli.base import CLIError, Handler, command, default_root, one_line


@command("dashboard", help="open the dashboard (Streamlit) on a runs folder")
def _dashboard(p: argparse.ArgumentParser) -> Handler:
    p.add_argument(
        "root", nargs="?", type=Path, help="runs folder (default: sample_runs/ or ./runs)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")

    def run(args: argparse.Namespace) -> int:
        root = (args.root or default_root()).resolve()
        if not root.is_dir():
            raise CLIError(f"root: expected a folder of runs, got {root} (not a folder)")
        cmd = streamlit_command(root, host=args.host, port=args.port)
        if args.dry_run:
            print(" ".join(cmd))
            return 0
        print(f"infoscope dashboard on http://{args.host}:{args.port} (runs: {root})", flush=True)
        try:
            return subprocess.call(cmd, env=server_env())
        except KeyboardInterrupt:
            return 0

    return run


@command("report", help="write one run as a self-contained HTML report (no server, no network)")
def _report(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("run", type=Path, help="the run folder (holding run.sqlite)")
    p.add_argument(
        "--out", type=Path, help="the HTML file to write (default: RUN_FOLDER_NAME.html here)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument(
        "--unit",
        choices=("bits", "nats"),
        default="bits",
        help="unit of information quantities (default bits, as the dashboard)",
    )

    def run(args: argparse.Namespace) -> int:
        from dashboard.report import ReportError, default_file_name, write_report
        from diagnostics.runlog import RunLogError

        out = args.out if args.out is not None else Path(default_file_name(args.run))
        try:
            size = write_report(args.run, out, overwrite=args.overwrite, unit=args.unit)
        except (ReportError, RunLogError) as exc:
            raise CLIError(one_line(exc)) from None
        except OSError as exc:
            raise CLIError(one_line(f"--out: cannot write {out}: {exc}")) from None
        print(f"wrote {out} ({size / 1e6:.1f} MB)")
        return 0

    return run
