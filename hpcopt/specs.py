"""Spec strings ``NAME[:key=value,...]``, lists of them, byte sizes, and option value parsers.

A value parser takes the option's text and returns the value, or raises ValueError whose
message says what was expected ("a positive integer"); the registry turns that into one
line for the user.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TypeVar

from hpcopt.errors import UsageError

__all__ = [
    "boolean",
    "bounded",
    "choice",
    "format_size",
    "fraction",
    "integer",
    "label",
    "no_repeats",
    "nonnegative_int",
    "nonnegative_real",
    "open_unit_interval",
    "parse_size",
    "parse_spec",
    "plural",
    "positive_int",
    "positive_real",
    "positive_size",
    "real",
    "size",
    "split_specs",
    "text",
    "unit_interval",
]

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(I?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | int) -> int:
    """Bytes from ``8``, ``64K``, ``16M``, ``2G`` (binary multiples); UsageError otherwise."""
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"size must not be negative: {text}")
        return text
    match = _SIZE.match(str(text))
    if not match:
        if str(text).strip().startswith("-"):
            raise UsageError(f"size must not be negative: {text!r}")
        raise UsageError(f"cannot parse size {text!r}; use e.g. 8, 64K, 16M, 1G")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def format_size(nbytes: int) -> str:
    """``16 MiB``-style label with the largest exact binary unit."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def plural(count: int, noun: str) -> str:
    """``1 rank``, ``2 ranks``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def parse_spec(spec: str, what: str) -> tuple[str, dict[str, str]]:
    """Split ``NAME:key=value,key=value`` into the name and its raw options (keys once each)."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"empty {what} name in {spec!r}")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise UsageError(f"{what} {name}: {item!r} is not key=value")
        if key in options:
            raise UsageError(f"{what} {name}: option {key} given twice")
        options[key] = value
    return name, options


def split_specs(text: str, what: str) -> list[str]:
    """A comma list of specs whose options also use commas: ``a:k=1,j=2,b`` is [a:k=1,j=2; b].

    An item with ``=`` and no ``:`` continues the previous spec's options.
    """
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item:
            if not specs:
                raise UsageError(f"{what} list {text!r} starts with an option, not a name")
            specs[-1] += "," + item
        else:
            specs.append(item)
    if not specs:
        raise UsageError(f"no {what} given")
    return no_repeats(specs, what)


def no_repeats(items: list[str], what: str) -> list[str]:
    """``items`` unchanged; UsageError naming the first one given twice."""
    seen: set[str] = set()
    for item in (i.strip() for i in items):
        if item in seen:
            raise UsageError(f"{what} {item} given twice")
        seen.add(item)
    return items


N = TypeVar("N", int, float)


def integer(value: str) -> int:
    """A whole number written as digits (not 1e5 or 1.0)."""
    try:
        return int(value.strip(), 10)
    except ValueError:
        raise ValueError("an integer") from None


def real(value: str) -> float:
    """A finite number."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(number):
        raise ValueError("a finite number")
    return number


def size(value: str) -> int:
    """A byte size such as 64K."""
    try:
        return parse_size(value)
    except UsageError:
        raise ValueError("a size such as 64K or 1M") from None


def boolean(value: str) -> bool:
    """0/1, true/false, yes/no."""
    word = value.strip().lower()
    if word not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError("0 or 1 (true/false, yes/no)")
    return word in ("1", "true", "yes")


def text(value: str) -> str:
    """Any text."""
    return value


def bounded(base: Callable[[str], N], ok: Callable[[N], bool], expected: str) -> Callable[[str], N]:
    """A parser: ``base``'s value when ``ok`` accepts it, else ValueError(``expected``)."""

    def parse(value: str) -> N:
        number = base(value)
        if not ok(number):
            raise ValueError(expected)
        return number

    parse.__doc__ = expected[0].upper() + expected[1:] + "."
    return parse


positive_int = bounded(integer, lambda n: n >= 1, "a positive integer")
nonnegative_int = bounded(integer, lambda n: n >= 0, "an integer >= 0")
positive_real = bounded(real, lambda x: x > 0, "a number > 0")
nonnegative_real = bounded(real, lambda x: x >= 0, "a number >= 0")
fraction = bounded(real, lambda x: 0 < x <= 1, "a number in (0, 1]")
unit_interval = bounded(real, lambda x: 0 <= x <= 1, "a number in [0, 1]")
open_unit_interval = bounded(real, lambda x: 0 < x < 1, "a number in (0, 1)")
positive_size = bounded(size, lambda n: n >= 1, "a size of at least 1 byte")


def label(value: str) -> str:
    """A label for logs and tables: printable text on one line, at most 200 characters."""
    if len(value) > 200 or any(not c.isprintable() for c in value):
        raise UsageError(f"label {value[:40]!r}: use printable text on one line (at most 200)")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser that accepts one of ``allowed``."""

    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return value

    return parse
