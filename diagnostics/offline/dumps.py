"""Saved activations and logits (``.npz``, ``.pt``, ``.safetensors``) read into per-step snapshots.

Formats (each file a mapping of name -> array):

- ``.npz`` (``numpy.savez``), read with ``allow_pickle=False``;
- ``.pt`` / ``.pth`` (``torch.save`` of a dict of tensors; nested dicts are flattened with
  ``.``, so ``{"acts": {"encoder.0": t}}`` is the layer ``acts.encoder.0``), read only with
  ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling (a pickled class,
  a numpy array) is refused, because loading it would run code from the file;
- ``.safetensors`` (the ``safetensors`` package; installed with ``infoscope[hf]``).

Layouts:

- *one file per step*: ``step`` (optional, one number) is the training step; otherwise the
  last number in the file name (``acts_step1200.npz`` -> 1200), otherwise the file's
  position in the list;
- *stacked*: one file whose ``step`` is a 1-D array of ``S`` step numbers and whose every
  other array has a leading axis of ``S`` (entry ``i`` belongs to step ``step[i]``).

``layout="auto"`` tells them apart by ``step``: more than one number means stacked. A
stacked file of a single step needs ``layout="stacked"``.

Arrays: ``x`` (inputs, ``(n, ...)``), ``y`` (labels, ``(n,)``), ``logits`` (``(..., vocab)``)
with ``mask`` (``logits.shape[:-1]``); every other array is a layer's activations
``(n, ...)``. Checks, each an error naming the file: ``x``, ``y`` and the layers share ``n``
within a step; ``mask`` matches ``logits``; an array keeps its shape beyond the first axis
(``logits``: its vocabulary) across steps; no step occurs twice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYOUTS", "SUFFIXES", "Snapshot", "expand_paths", "load_dumps", "read_dump"]

SUFFIXES = (".npz", ".pt", ".pth", ".safetensors")
LAYOUTS = ("auto", "per-step", "stacked")
RESERVED = ("step", "x", "y", "logits", "mask")


@dataclass
class Snapshot:
    """One step's arrays (numpy), the step and the file they came from."""

    step: int
    arrays: dict[str, np.ndarray]
    source: str


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The dump files named by ``paths``: a folder stands for its files with a known suffix
    (name order, not recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in SUFFIXES and f.is_file())
            if not found:
                raise ValueError(f"{p}: a folder with no {', '.join(SUFFIXES)} files")
            out += found
        else:
            out.append(p)
    return out


def _to_numpy(value: Any, path: Path, key: str) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # bfloat16, float8: no numpy dtype
            return t.float().numpy()
    if isinstance(value, (bool, int, float)):
        return np.asarray(value)
    raise ValueError(
        f"{path}: unknown layout: expected a dict of tensors (name -> tensor), got "
        f"{type(value).__name__} at {key!r}"
    )


def _flatten(obj: Mapping[Any, Any], path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, path, name + "."))
        else:
            out[name] = _to_numpy(value, path, name)
    return out


def _read_pt(path: Path) -> dict[str, np.ndarray]:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if m is None:  # not a pickled object: a damaged or foreign file
            why = re.search(r"WeightsUnpickler error: (.*?)(?:\n\n|$)", str(exc), re.S)
            why = why.group(1).strip() if why else str(exc)
            raise ValueError(f"{path}: cannot read it as a torch.save file ({why})") from None
        raise ValueError(
            f"{path}: refused: it holds a pickled {m.group(1)}, which "
            "torch.load(weights_only=True) will not load (unpickling it could run code from "
            "the file); save a dict of tensors (torch.save({'layer': tensor, ...})) or a "
            ".safetensors file"
        ) from None
    except Exception as exc:  # torch raises many types for a file that is not its own
        raise ValueError(
            f"{path}: cannot read it as a torch.save file ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{path}: unknown layout: expected a dict of tensors (name -> tensor), got "
            f"{type(obj).__name__}"
        )
    return _flatten(obj, path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ImportError(
            f"{path}: reading .safetensors needs the safetensors package: "
            "pip install safetensors (or infoscope[hf])"
        ) from None
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: _to_numpy(f.get_tensor(k), path, k) for k in f.keys()}
    except ValueError:
        raise
    except Exception as exc:  # SafetensorError and friends
        raise ValueError(f"{path}: cannot read it as a .safetensors file ({exc})") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"{path}: refused: it holds object arrays (pickled Python objects), which "
                "are not read (unpickling could run code from the file)"
            ) from None
        raise ValueError(f"{path}: cannot read it as an .npz file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read it as an .npz file ({exc})") from None


def read_dump(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of one dump file, by its suffix (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"snapshot: expected a {', '.join(SUFFIXES)} file, got {path.name} (unknown format)"
        )
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_pt(path)


def _int_step(value: Any, path: Path) -> int:
    f = float(value)
    if not f.is_integer():
        raise ValueError(f"{path}: 'step' must hold integers, got {value!r}")
    return int(f)


def _split(path: Path, arrays: dict[str, np.ndarray], layout: str, index: int) -> list[Snapshot]:
    step = arrays.pop("step", None)
    step = None if step is None else np.asarray(step)
    if step is not None and step.ndim > 1:
        raise ValueError(
            f"{path}: unknown layout: 'step' has shape {tuple(step.shape)}; expected one number "
            "(one file per step) or a 1-D array of step numbers (a stacked dump)"
        )
    stacked = layout == "stacked" or (
        layout == "auto" and step is not None and step.ndim == 1 and step.size > 1
    )
    if not stacked:
        if step is not None and step.size != 1:
            raise ValueError(
                f"{path}: unknown layout: 'step' holds {step.size} numbers but --layout "
                "per-step expects one (use --layout stacked for a stacked dump)"
            )
        if step is not None:
            number = _int_step(step.reshape(-1)[0], path)
        else:
            digits = re.findall(r"\d+", path.stem)
            number = int(digits[-1]) if digits else index
        return [Snapshot(number, arrays, str(path))]
    if step is None or step.ndim != 1:
        raise ValueError(
            f"{path}: unknown layout: a stacked dump needs a 1-D 'step' array (one step number "
            "per entry of the leading axis)"
        )
    steps = [_int_step(s, path) for s in step]
    for key, a in arrays.items():
        if a.ndim == 0 or a.shape[0] != len(steps):
            raise ValueError(
                f"{path}: unknown layout: 'step' has {len(steps)} entries (a stacked dump) but "
                f"{key!r} has shape {tuple(a.shape)}; expected a leading axis of {len(steps)}"
            )
    return [
        Snapshot(s, {k: a[i] for k, a in arrays.items()}, str(path)) for i, s in enumerate(steps)
    ]


def _check(snapshots: Sequence[Snapshot]) -> None:
    first_seen: dict[str, tuple[tuple[int, ...], Snapshot]] = {}
    steps: dict[int, Snapshot] = {}
    for snap in snapshots:
        where = f"{snap.source} (step {snap.step})"
        if snap.step in steps:
            raise ValueError(
                f"{where}: step {snap.step} occurs twice (also in {steps[snap.step].source})"
            )
        steps[snap.step] = snap
        a = snap.arrays
        rows = {k: v.shape[0] for k, v in a.items() if k not in ("logits", "mask") and v.ndim}
        scalars = [k for k, v in a.items() if k not in ("logits", "mask") and v.ndim == 0]
        if scalars:
            raise ValueError(
                f"{where}: {scalars[0]!r} is a single number; expected an array with one row "
                "per sample"
            )
        if len(set(rows.values())) > 1:
            detail = ", ".join(f"{k} {n}" for k, n in rows.items())
            raise ValueError(
                f"{where}: arrays disagree on the number of samples (rows: {detail}); x, y and "
                "every layer hold one row per sample"
            )
        if "mask" in a and ("logits" not in a or a["mask"].shape != a["logits"].shape[:-1]):
            got = tuple(a["logits"].shape) if "logits" in a else "no logits"
            raise ValueError(
                f"{where}: 'mask' has shape {tuple(a['mask'].shape)}; expected "
                f"logits.shape[:-1] (logits: {got})"
            )
        for key, arr in a.items():
            if key == "mask":
                continue
            tail = tuple(arr.shape[-1:]) if key == "logits" else tuple(arr.shape[1:])
            seen = first_seen.setdefault(key, (tail, snap))
            if seen[0] != tail:
                other = seen[1]
                raise ValueError(
                    f"{where}: mismatched shapes across steps: {key!r} has shape "
                    f"{tuple(arr.shape)} here but {tuple(other.arrays[key].shape)} at step "
                    f"{other.step} ({other.source}); each array keeps its shape beyond the "
                    "first (sample) axis"
                )


def load_dumps(
    paths: Sequence[str | os.PathLike], *, layout: str = "auto", progress: bool | None = None
) -> list[Snapshot]:
    """Every step held by the dump files ``paths`` (folders expanded), checked and sorted by
    step (see the module docstring)."""
    from diagnostics.offline.progress import progress_bar

    if layout not in LAYOUTS:
        raise ValueError(f"--layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    files = expand_paths(paths)
    if not files:
        raise ValueError("paths: expected at least one snapshot file, got none")
    snapshots: list[Snapshot] = []
    for i, path in enumerate(progress_bar(files, enabled=progress, desc="load", unit="file")):
        snapshots += _split(path, read_dump(path), layout, i)
    snapshots.sort(key=lambda s: s.step)
    _check(snapshots)
    return snapshots
