"""Rotating buffer sets (IMB ``-off_cache``, OSU ``-b multiple``): how many, and the cache size.

``--buffers N`` gives each size N sets of send and receive buffers, call k using set k mod N;
``--buffers auto`` picks enough sets that together they exceed twice the last-level cache.
Either way a size never gets more sets than it makes calls (warm-ups included), since a set
beyond that would never be touched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcopt.bench.harness import Prepared
from hpcopt.errors import UsageError

__all__ = [
    "AUTO",
    "DEFAULT_LLC_BYTES",
    "RotatingSets",
    "buffer_sets",
    "last_level_cache",
    "parse_buffers",
]

AUTO = 0
DEFAULT_LLC_BYTES = 32 << 20
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


def parse_buffers(text: str) -> int:
    """``--buffers``: a positive count, or ``auto`` (returned as 0)."""
    if text.strip() == "auto":
        return AUTO
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 1:
        raise UsageError(f"--buffers must be a positive count or auto, got {text!r}")
    return count


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1:] in units else int(text)


def last_level_cache() -> int:
    """Bytes of this CPU's last-level cache (sysfs), or 32 MiB when it cannot be read."""
    best_level, best_size = 0, 0
    for index in sorted(CACHE_DIR.glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = _size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if level > best_level or (level == best_level and size > best_size):
            best_level, best_size = level, size
    return best_size or DEFAULT_LLC_BYTES


def buffer_sets(requested: int, set_bytes: int, calls: int) -> int:
    """Sets to allocate: ``requested`` (AUTO: twice the last-level cache over the bytes of
    one set), never more than ``calls`` and never fewer than one."""
    if requested == AUTO:
        requested = math.ceil(2 * last_level_cache() / max(set_bytes, 1))
    return max(1, min(requested, calls))


class RotatingSets(Prepared):
    """Buffers of one size in sets used in turn: call k uses set k mod N, as the C core
    numbers its calls. Subclasses make one set (:meth:`new_set`) and the bound calls of all
    of them (:meth:`bound_calls`), and start with ``self.sets = [self.new_set()]`` and
    :meth:`rebind`."""

    sets: list[Any]

    def new_set(self) -> Any:
        """Allocate one more set of buffers."""
        raise NotImplementedError

    def bound_calls(self) -> list[Callable[[], Any]]:
        """One zero-argument call per position of the rotation."""
        raise NotImplementedError

    def rebind(self) -> None:
        self.calls = self.bound_calls()
        self._next = itertools.cycle(self.calls).__next__

    def set_bytes(self) -> int:
        """Bytes of one set, the same on every rank (default: twice the iteration's)."""
        return 2 * self.iteration_bytes()

    def plan_calls(self, calls: int, buffers: int) -> None:
        wanted = buffer_sets(buffers, self.set_bytes(), calls)
        self.sets += [self.new_set() for _ in range(wanted - len(self.sets))]
        self.buffer_sets = len(self.sets)
        self.rebind()

    def next_call(self) -> Any:
        """Make the next call of the rotation; its result."""
        return self._next()()

    def timed_call(self) -> Callable[[], Any]:
        if len(self.calls) == 1:
            return self.calls[0]
        following = self._next
        return lambda: following()()
