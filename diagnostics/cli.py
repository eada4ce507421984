"""The ``infoscope`` command line.

Each subcommand is a small function registered with :func:`command`; later features
add theirs the same way (``@command("name", help=...)`` taking the argparse parser to
fill and returning the handler). Handlers return an exit code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from diagnostics._version import __version__

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Handler]]] = {}


def command(name: str, *, help: str):
    """Register a subcommand: the decorated function fills its parser and returns the handler."""

    def register(setup: Callable[[argparse.ArgumentParser], Handler]):
        _COMMANDS[name] = (help, setup)
        return setup

    return register


class CLIError(Exception):
    """An error to print as ``infoscope: error: ...`` with exit code 2."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_root() -> Path:
    """The runs folder used when none is given: ``./sample_runs``, ``./runs``, then the
    project's own ``sample_runs/``."""
    for candidate in (Path("sample_runs"), Path("runs"), _repo_root() / "sample_runs"):
        if candidate.is_dir():
            return candidate
    return Path("runs")


# ---------------------------------------------------------------------------- runs
@command("runs", help="list the runs below a folder with step range and alert counts")
def _runs(p: argparse.ArgumentParser) -> Handler:
    p.add_argument(
        "root", nargs="?", type=Path, help="folder to search (default: sample_runs/ or ./runs)"
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
        for col in ("rows", "metrics", "alerts", "warnings", "collapsed", "failures"):
            show[col] = show[col].astype("Int64")
        show = show.astype(object)
        show = show.where(show.notna(), "")
        print(show.to_string(index=False))
        for _, row in table[table["error"].notna()].iterrows():
            print(f"! {row['run']}: {row['error']}", file=sys.stderr)
        return 0

    return run


# ----------------------------------------------------------------------- dashboard
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
        app = _repo_root() / "app.py"
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


# -------------------------------------------------------------------------- export
@command("export", help="export a run's tables to parquet or csv files")
def _export(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--out", type=Path, help="output folder (default: RUN/export)")

    def run(args: argparse.Namespace) -> int:
        from diagnostics.runlog import RunLogError, open_run

        try:
            reader = open_run(args.run)
        except RunLogError as exc:
            raise CLIError(str(exc)) from None
        out = args.out or (reader.run_dir / "export")
        out.mkdir(parents=True, exist_ok=True)
        import json

        with reader:
            tables = {
                "scalars": reader.scalars(),
                "distributions": reader.distributions(),
                "alerts": reader.alerts(),
                "events": reader.events(),
            }
            meta = reader.meta
        for name, df in tables.items():
            df = df.copy()
            for col in ("data", "evidence", "detail"):
                if col in df:
                    df[col] = [json.dumps(v) for v in df[col]]
            for col in ("metric", "layer"):
                if col in df and isinstance(df[col].dtype, __import__("pandas").CategoricalDtype):
                    df[col] = df[col].astype(object)
            path = out / f"{name}.{args.format}"
            if args.format == "csv":
                df.to_csv(path, index=False)
            else:
                df.to_parquet(path, index=False)
            print(f"{path} ({len(df)} rows)")
        (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        print(out / "meta.json")
        return 0

    return run


# ----------------------------------------------------------------------- reproduce
#: reproduction name -> (script relative to the repository root, one-line description).
#: Each script exposes ``main(argv, prog=...)``; add yours here.
_REPRODUCTIONS: dict[str, tuple[str, str]] = {
    "information-plane": (
        "examples/information_plane.py",
        "train the 12-10-7-5-4-3-2 network (tanh or ReLU) on the 12-bit task and log its "
        "binning information plane (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018)",
    ),
}


@command("reproduce", help="re-run a paper's experiment and write it as a run")
def _reproduce(p: argparse.ArgumentParser) -> Handler:
    p.epilog = "reproductions:\n" + "\n".join(
        f"  {name}: {desc}" for name, (_, desc) in _REPRODUCTIONS.items()
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("name", choices=sorted(_REPRODUCTIONS), help="which reproduction")
    p.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        help="its own options (see `infoscope reproduce NAME --help`)",
    )

    def run(args: argparse.Namespace) -> int:
        import importlib.util

        rel, _ = _REPRODUCTIONS[args.name]
        script = _repo_root() / rel
        if not script.is_file():
            raise CLIError(
                f"the reproduction script was not found at {script}; reproductions run from "
                "a source checkout (git clone, then pip install -e .)"
            )
        spec = importlib.util.spec_from_file_location(
            f"_infoscope_reproduce_{args.name.replace('-', '_')}", script
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return int(module.main(args.args, prog=f"infoscope reproduce {args.name}") or 0)

    return run


# ------------------------------------------------------------------------- analyze
@command("analyze", help="analyse saved activations/logits (.npz snapshots) into a run")
def _analyze(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("snapshots", nargs="+", type=Path, help=".npz files, one per step")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument(
        "--metrics",
        default="act_stats,effective_rank,von_neumann,dse,info_plane",
        help="comma-separated per-layer metrics (act_stats, effective_rank, von_neumann, "
        "dse, dsmi, info_plane)",
    )
    p.add_argument("--method", default="binning", help="information-plane estimator")
    p.add_argument("--sigma", type=float, default=10.0, help="DSE/DSMI kernel width")

    def run(args: argparse.Namespace) -> int:
        from diagnostics.offline import analyze_snapshots
        from diagnostics.runlog import RunLogError

        if (args.out / "run.sqlite").exists():
            raise CLIError(f"--out: {args.out} already holds a run; choose a new folder")
        try:
            out = analyze_snapshots(
                args.snapshots,
                args.out,
                metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
                method=args.method,
                sigma=args.sigma,
            )
        except (ValueError, RunLogError) as exc:
            raise CLIError(str(exc)) from None
        print(
            f"wrote {out} ({len(args.snapshots)} snapshots); view: infoscope dashboard {out.parent}"
        )
        return 0

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infoscope",
        description="infoscope: see what your network's layers know while it trains.",
    )
    parser.add_argument("--version", action="version", version=f"infoscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, setup) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_handler=setup(sp))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "_handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except CLIError as exc:
        print(f"infoscope: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
