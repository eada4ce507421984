"""Progress bars for long offline work: tqdm on a terminal, silent otherwise or when asked."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    enabled: bool | None = None,
    **kwargs: Any,
) -> Any:
    """A ``tqdm`` bar over ``iterable`` on stderr.

    ``enabled``: ``None`` shows it only when stderr is a terminal, ``False`` never (the
    CLI's ``--quiet``), ``True`` always.
    """
    from tqdm.auto import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(iterable, disable=disable, leave=False, dynamic_ncols=True, **kwargs)
