"""`infoscope dashboard`, `infoscope demo` and `infoscope report`: start the Streamlit
dashboard on a runs folder, or on the sample runs shipped with the package (and record those
again), or write one run as a self-contained HTML report.

Plugin commands: the CLI imports this module through the ``infoscope.commands`` entry
point (see pyproject.toml), so that ``diagnostics`` never imports the dashboard. Only
``infoscope demo --regenerate`` imports :mod:`dashboard.samples` (and so torch).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from dashboard.serve import SAMPLE_RUNS, server_env, streamlit_command
from diagnostics.cli.base import CLIError, Handler, command, default_root, one_line


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")


def _open_dashboard(root: Path, args: argparse.Namespace) -> int:
    cmd = streamlit_command(root, host=args.host, port=args.port)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    print(f"infoscope dashboard on http://{args.host}:{args.port} (runs: {root})", flush=True)
    try:
        return subprocess.call(cmd, env=server_env())
    except KeyboardInterrupt:
        return 0


@command("dashboard", help="open the dashboard (Streamlit) on a runs folder")
def _dashboard(p: argparse.ArgumentParser) -> Handler:
    p.add_argument(
        "root", nargs="?", type=Path, help="runs folder (default: ./runs, else the sample runs)"
    )
    _server_options(p)

    def run(args: argparse.Namespace) -> int:
        root = (args.root or default_root()).resolve()
        if not root.is_dir():
            raise CLIError(f"root: expected a folder of runs, got {root} (not a folder)")
        return _open_dashboard(root, args)

    return run


@command("demo", help="open the dashboard on the sample runs shipped with infoscope")
def _demo(p: argparse.ArgumentParser) -> Handler:
    p.description = (
        "Open the dashboard on the sample runs shipped with infoscope (from any folder), "
        "or, with --regenerate DIR, record those runs again into DIR with the example "
        "scripts (about 15-20 minutes on two CPU cores; --quick: a shortened try)."
    )
    _server_options(p)
    p.add_argument(
        "--regenerate",
        metavar="DIR",
        type=Path,
        help="record the sample runs into DIR instead of opening the dashboard",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=["information-plane", "digits", "lm"],
        help="with --regenerate: only these runs (repeatable; default: all)",
    )
    p.add_argument(
        "--quick", action="store_true", help="with --regenerate: shortened runs, to try it"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="with --regenerate: replace runs in DIR"
    )

    def run(args: argparse.Namespace) -> int:
        if args.regenerate is None:
            for flag in ("only", "quick", "overwrite"):
                if getattr(args, flag):
                    raise CLIError(f"--{flag}: only meaningful with --regenerate DIR")
            if not (SAMPLE_RUNS.is_dir() and any(SAMPLE_RUNS.glob("*/run.sqlite"))):
                raise CLIError(
                    f"the sample runs are missing from this installation (expected at "
                    f"{SAMPLE_RUNS}); reinstall infoscope, or record them with "
                    "`infoscope demo --regenerate DIR` and open `infoscope dashboard DIR`"
                )
            return _open_dashboard(SAMPLE_RUNS, args)
        return _regenerate(args)

    return run


def _regenerate(args: argparse.Namespace) -> int:
    out = args.regenerate.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise CLIError(f"--regenerate: expected a folder, got {out} (a file)")
    try:
        from dashboard.samples.regenerate import regenerate
    except ModuleNotFoundError as exc:
        raise CLIError(f"--regenerate needs {exc.name}, which is not installed") from None
    try:
        runs = regenerate(out, only=args.only, quick=args.quick, overwrite=args.overwrite)
    except (FileExistsError, ModuleNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(f"{len(runs)} sample runs written to {out}; open them with: infoscope dashboard {out}")
    return 0


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
