"""`infoscope dashboard`: start the Streamlit dashboard on a runs folder."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from diagnostics.cli.base import CLIError, Handler, command, default_root, repo_root


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
        app = repo_root() / "app.py"
        if not app.is_file():
            raise CLIError(
                f"the dashboard app was not found at {app}; install infoscope from a source "
                "checkout (pip install -e .) or run `streamlit run app.py` in the repository"
            )
        cmd = [
            sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", args.host,
            "--server.port", str(args.port),
            "--browser.gatherUsageStats", "false",
            "--", "--root", str(root),
        ]  # fmt: skip
        if args.dry_run:
            print(" ".join(cmd))
            return 0
        print(f"infoscope dashboard on http://{args.host}:{args.port} (runs: {root})", flush=True)
        try:
            return subprocess.call(cmd)
        except KeyboardInterrupt:
            return 0

    return run
