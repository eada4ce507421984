"""Values read from run logs once per server and shared by every session: each is kept
with the last row id it has seen, and brought up to date by reading only newer rows (a
finished run is read once; a live run costs its new rows per refresh).

Streamlit's ``st.cache_data`` would copy a cached frame (pickle) on every hit and start
over whenever a live run's last id moves; these caches hand out the same object and tail
it instead, so callers must treat what they get as read-only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class TailCache:
    """A least-recently-used map ``key -> (value, seen id)`` shared by all sessions.

    :meth:`get` returns the value for ``key`` as of row id ``last``: the cached one if
    it has seen ``last``; else ``tail(value, seen)`` (the rows after ``seen`` folded in)
    if there is a cached value and ``tail`` is given; else ``full()``. Both return
    ``(value, seen)``. A cached ``seen`` beyond ``last`` means the run was rewritten: the
    value is read in full again. ``last=None`` (the table's last id is unknown) always
    tails. Reads happen under one lock, so two sessions never read the same rows twice.

    >>> cache = TailCache(2)
    >>> cache.get("run", last=3, full=lambda: ([1, 2, 3], 3), tail=None)
    [1, 2, 3]
    >>> cache.get("run", last=4, full=lambda: ([], 0), tail=lambda v, seen: (v + [4], 4))
    [1, 2, 3, 4]
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries: expected an integer >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        key: Hashable,
        *,
        last: int | None,
        full: Callable[[], tuple[Any, int]],
        tail: Callable[[Any, int], tuple[Any, int]] | None = None,
    ) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and last is not None and hit[1] == last:
                self._items.move_to_end(key)
                return hit[0]
            if hit is None or tail is None or (last is not None and hit[1] > last):
                value, seen = full()
            else:
                value, seen = tail(*hit)
            self._items[key] = (value, seen)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
