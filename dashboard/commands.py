"""`infoscope dashboard`: start the Streamlit dashboard on a runs folder.

A plugin command: the CLI imports this module through the ``infoscope.commands`` entry
point (see pyproject.toml), so that ``diagnostics`` never imports the dashboard.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from dashboard.serve import server_env, streamlit_command
from diagnostics.cli.base import CLIError, Handler, command, default_root


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
