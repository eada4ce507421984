"""What every ``infoscope`` subcommand shares: the :func:`command` registry, the error type
that prints as ``infoscope: error: ...``, and the default runs folder."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], Handler]

#: subcommand name -> (one-line help, setup); filled by :func:`command` as modules import
COMMANDS: dict[str, tuple[str, Setup]] = {}


def command(name: str, *, help: str):
    """Register a subcommand: the decorated function fills its parser and returns the
    handler, which returns an exit code."""

    def register(setup: Setup) -> Setup:
        COMMANDS[name] = (help, setup)
        return setup

    return register


class CLIError(Exception):
    """An error to print as ``infoscope: error: ...`` with exit code 2."""


def one_line(exc: BaseException | str) -> str:
    """A message on one line (the CLI prints each error and warning as one line)."""
    return " ".join(str(exc).split())


def repo_root() -> Path:
    """The folder this package was imported from: the source checkout, or site-packages
    for an installed wheel."""
    return Path(__file__).resolve().parents[2]


def sample_runs() -> Path:
    """The sample runs shipped with infoscope: package data of the dashboard, beside this
    package in a checkout and in an installed wheel alike (a path only: nothing here
    imports the dashboard)."""
    return repo_root() / "dashboard" / "sample_runs"


def default_root() -> Path:
    """The runs folder used when none is given: ``./runs`` if it exists, else the sample
    runs (:func:`sample_runs`)."""
    for candidate in (Path("runs"), sample_runs()):
        if candidate.is_dir():
            return candidate
    return Path("runs")


def add_run_output_options(p: argparse.ArgumentParser, *, what: str) -> None:
    """The options every command that writes a run shares: ``--rl`` (whether ``what`` comes
    from RL fine-tuning, for the detectors), ``--overwrite`` and ``-q/--quiet``."""
    p.add_argument(
        "--rl",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"{what} comes from RL fine-tuning (--no-rl: it does not); judges token-entropy "
        "collapse, which in pretraining is learning (default: RL when a reward or covariance "
        "is logged)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
