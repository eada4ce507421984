"""Record the sample runs again (``infoscope demo --regenerate DIR``): the information
plane (tanh, ReLU), the digits MLP (true and random labels) and the language-model runs
(pretraining, RL with and without Clip-Cov), each with a progress bar.

The full recipes take about 15-20 minutes on two CPU cores; ``quick`` shortens every run
(the shortened settings of the tests) to try the recording in about a minute, not to
replace the shipped runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from dashboard.samples import digits, information_plane, lm_entropy

#: group -> the runs it writes, in recording order
GROUPS: dict[str, tuple[str, ...]] = {
    "information-plane": ("information-plane-tanh", "information-plane-relu"),
    "digits": tuple(digits.RUN_NAMES.values()),
    "lm": lm_entropy.NAMES,
}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bar(name: str, total: int, unit: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=f"{name:26s}", unit=unit, file=sys.stderr, disable=not enabled)


def _information_plane(out: Path, quick: bool, show: bool) -> None:
    with _threads(1):  # a 12-10-7-5-4-3-2 net: threads only add contention
        for activation, name in zip(("tanh", "relu"), GROUPS["information-plane"]):
            if quick:  # the tests' shortened recipe (full batch, larger lr)
                cfg = information_plane.Config(
                    activation=activation, epochs=500, lr=1e-2, full_batch=True, points=25
                )
            else:
                cfg = information_plane.Config(activation=activation)
            with _bar(name, cfg.epochs + 1, "epoch", show) as bar:
                information_plane.run(
                    cfg, out=out / name, overwrite=True, verbose=False, progress=bar.update
                )


def _digits(out: Path, quick: bool, show: bool) -> None:
    with _threads(1):
        for labels, name in digits.RUN_NAMES.items():
            epochs = {"true": 100, "random": 400}[labels] if quick else 0
            cfg = digits.Config(labels=labels, epochs=epochs, points=9 if quick else 60)
            with _bar(name, cfg.epochs + 1, "epoch", show) as bar:
                digits.run(cfg, out / name, overwrite=True, verbose=False, progress=bar.update)


def _lm(out: Path, quick: bool, show: bool) -> None:
    steps, rl_steps = (40, 30) if quick else (200, 150)
    bars: list[tqdm] = []

    def progress(name: str) -> Callable[[int], object]:
        if bars:
            bars[-1].close()
        bars.append(_bar(name, steps if name == lm_entropy.NAMES[0] else rl_steps, "step", show))
        return bars[-1].update

    with _threads(2), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*loss_type=None.*")
        try:
            lm_entropy.record(out, steps=steps, rl_steps=rl_steps, progress=progress)
        finally:
            for bar in bars:
                bar.close()


RECORDERS: dict[str, Callable[[Path, bool, bool], None]] = {
    "information-plane": _information_plane,
    "digits": _digits,
    "lm": _lm,
}


def regenerate(
    out: str | Path,
    *,
    only: Sequence[str] | None = None,
    quick: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Record the sample runs of the groups ``only`` (all of :data:`GROUPS` if None) into
    ``out``; return the run folders written.

    Refuses (``FileExistsError``, before recording anything) when ``out`` already holds
    one of those runs, unless ``overwrite``. ``progress``: draw a tqdm bar per run on
    stderr. The language-model runs need ``transformers`` (``pip install
    'infoscope[hf]'``); without it they are refused up front (``ModuleNotFoundError``).
    """
    groups = list(GROUPS) if only is None else list(dict.fromkeys(only))
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise ValueError(
            f"only: expected some of {', '.join(GROUPS)}, got {', '.join(unknown) or 'none'}"
        )
    if "lm" in groups and importlib.util.find_spec("transformers") is None:
        raise ModuleNotFoundError(
            "the language-model sample runs need transformers: pip install 'infoscope[hf]' "
            "(or leave them out: --only information-plane --only digits)"
        )
    out = Path(out)
    names = [n for g in groups for n in GROUPS[g]]
    existing = [n for n in names if (out / n / "run.sqlite").exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"out: {out} already holds {', '.join(existing)}; pass overwrite (--overwrite) "
            "to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for group in groups:
        RECORDERS[group](out, quick, progress)
    if progress:
        print(f"recorded {len(names)} runs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return [out / n for n in names]
