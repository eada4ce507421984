"""`infoscope reproduce`: re-run a paper's experiment from the examples and write it as a run."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from diagnostics.cli.base import CLIError, Handler, command, repo_root

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
        rel, _ = _REPRODUCTIONS[args.name]
        script = repo_root() / rel
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
