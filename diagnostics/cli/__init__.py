"""The ``infoscope`` command line: one module per subcommand.

A subcommand is a function registered with :func:`~diagnostics.cli.base.command` that fills
its argparse parser and returns the handler (which returns an exit code). The built-in ones
live in this package (``runs``, ``export``, ``analyze``, ``import-tb``, ...). Packages above
``diagnostics`` (the dashboard) add theirs through the ``infoscope.commands`` entry-point
group, so that nothing here imports them.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from importlib.metadata import entry_points

from diagnostics._version import __version__
from diagnostics.cli.base import COMMANDS, CLIError, command, default_root

__all__ = ["CLIError", "build_parser", "command", "default_root", "main"]

#: the subcommands of this package, in the order ``infoscope --help`` lists them
BUILTIN = ("runs", "export", "reproduce", "analyze", "import_tb", "import_csv")


def _load_commands() -> None:
    for name in BUILTIN:
        import_module(f"diagnostics.cli.{name}")
    for ep in entry_points(group="infoscope.commands"):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            print(f"infoscope: warning: command plugin {ep.name!r} failed: {exc}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="infoscope",
        description="infoscope: see what your network's layers know while it trains.",
    )
    parser.add_argument("--version", action="version", version=f"infoscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, setup) in COMMANDS.items():
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
