"""Parsing of ``NAME[:key=value,...]`` spec strings and of byte sizes with K/M/G suffixes."""

from __future__ import annotations

import re

from hpcopt.errors import UsageError

__all__ = ["format_size", "parse_size", "parse_spec"]

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


def parse_spec(spec: str, what: str) -> tuple[str, dict[str, str]]:
    """Split ``NAME:key=value,key=value`` into the name and its raw options."""
    name, _, rest = spec.strip().partition(":")
    if not name:
        raise UsageError(f"empty {what} name in {spec!r}")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"bad {what} option {item!r} in {spec!r}; expected key=value")
        options[key.strip()] = value.strip()
    return name, options
