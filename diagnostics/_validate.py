"""Input validation shared by the estimators (private).

Every public estimator validates its inputs once, at the boundary, with these helpers,
so that error messages have one shape: they name the argument, say what was expected
and what came (``"k: expected an integer >= 1, got 0"``). Kernels behind the boundary
assume valid input and never validate again.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

ArrayLike = Any  # torch.Tensor | np.ndarray (lists are accepted and converted)


def as_tensor(x: ArrayLike, *, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """Return ``x`` as a torch tensor without copying when it already is one.

    Numpy arrays (and nested lists) are converted with ``torch.as_tensor``; other types
    raise ``TypeError`` naming the argument.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype == object:
            raise TypeError(f"{name}: expected a numeric array, got a numpy array of dtype object")
        t = torch.as_tensor(np.ascontiguousarray(x))
    elif isinstance(x, (list, tuple)):
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name}: expected a numeric array, got a {type(x).__name__} ({exc})"
            ) from None
    else:
        raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if device is not None:
        t = t.to(device)
    return t


def is_integer_dtype(t: torch.Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex()) and t.dtype != torch.bool


def as_samples(
    x: ArrayLike,
    *,
    name: str,
    min_n: int = 1,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    allow_nonfinite: bool = False,
) -> torch.Tensor:
    """Validate samples of shape ``(n,)`` or ``(n, d)`` and return them as ``(n, d)``.

    Floats keep their dtype unless ``dtype`` is given; integers and booleans become
    ``dtype`` or float64. Raises ``ValueError`` for empty inputs, other ranks, fewer
    than ``min_n`` rows, and NaN/inf (unless ``allow_nonfinite``).
    """
    t = as_tensor(x, name=name, device=device)
    if t.is_complex():
        raise ValueError(f"{name}: expected real values, got complex dtype {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(1)
    elif t.ndim != 2:
        raise ValueError(
            f"{name}: expected shape (n,) or (n, d), got a {t.ndim}-D array of shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {tuple(t.shape)}")
    if t.shape[0] < min_n:
        raise ValueError(f"{name}: expected at least {min_n} samples (rows), got {t.shape[0]}")
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float64)
    if not allow_nonfinite:
        check_finite(t, name=name)
    return t


def check_finite(t: torch.Tensor, *, name: str) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or inf (one device sync, at the boundary)."""
    # the sum is NaN or inf if any entry is (cheaper than a mask; it can also overflow, so
    # then the entries are checked one by one)
    if t.is_floating_point() and not bool(torch.isfinite(t.sum())):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(bad.sum()) - n_nan
            raise ValueError(
                f"{name}: expected finite values, got {n_nan} NaN and {n_inf} inf entries"
            )


def as_labels(y: ArrayLike, *, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """Validate discrete class labels: a 1-D integer (or bool) array, returned as int64.

    A float array is refused even if it holds whole numbers, so that a continuous
    variable is never silently treated as labels.
    """
    t = as_tensor(y, name=name, device=device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(
            f"{name}: expected 1-D integer class labels of shape (n,), got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0:
        raise ValueError(f"{name}: expected non-empty labels, got an empty array")
    if t.is_floating_point() or t.is_complex():
        raise ValueError(
            f"{name}: expected integer class labels, got dtype {t.dtype}; "
            "cast to an integer dtype if these are labels, or use a continuous estimator"
        )
    return t.to(torch.int64)


def check_same_n(**arrays: torch.Tensor) -> int:
    """Check that all arrays have the same number of rows; return it."""
    sizes = {k: int(v.shape[0]) for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in sizes.items())
        raise ValueError(f"expected the same number of samples in {', '.join(sizes)}, got: {desc}")
    return next(iter(sizes.values()))


def check_int(
    value: Any, *, name: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Validate an integer option (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {value}")
    return value


def check_float(
    value: Any,
    *,
    name: str,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Validate a real-valued option: finite, optionally > 0 or within bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected a number >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected a number <= {maximum}, got {value}")
    return value


def check_choice(value: Any, *, name: str, choices: tuple[str, ...] | list[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_base(base: Any) -> float:
    """Validate a logarithm base (``math.e`` for nats, 2 for bits)."""
    b = check_float(base, name="base", positive=True)
    if b == 1.0:
        raise ValueError("base: expected a logarithm base > 0 and != 1, got 1.0")
    return b


def to_base(value_nats: torch.Tensor, base: float) -> torch.Tensor:
    """Convert a quantity in nats to the logarithm base ``base`` (no-op for ``math.e``)."""
    if base == math.e:
        return value_nats
    return value_nats / math.log(base)
