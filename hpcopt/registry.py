"""One registry mechanism for everything that can be plugged in: algorithms, encoders,
optimizers and problems.

Each thing is registered under a name with a factory and its options; a spec
``NAME:key=value,...`` selects one. Every registry checks specs the same way and words
its errors the same way, before anything runs.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hpcopt import specs
from hpcopt.errors import UsageError

__all__ = ["Entry", "Option", "Registry", "Selection", "load_plugins", "options_from_defaults"]

PLUGINS_ENV = "HPCOPT_PLUGINS"
PLUGINS_GROUP = "hpcopt.plugins"

T = TypeVar("T")

_PARSER_BY_TYPE: dict[type, Callable[[str], Any]] = {
    bool: specs.boolean,
    int: specs.integer,
    float: specs.real,
    str: specs.text,
}


@dataclass(frozen=True)
class Option:
    """One spec option: its key, the parser of its text, its default, the factory argument."""

    key: str
    parse: Callable[[str], Any]
    default: Any = None
    help: str = ""
    arg: str = ""

    @property
    def argument(self) -> str:
        """The factory's keyword argument that receives the value."""
        return self.arg or self.key


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered thing: its name, factory, options and kind-specific facts (``info``)."""

    name: str
    factory: Callable[..., T]
    options: tuple[Option, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    def describe_options(self) -> str:
        """``key=default, ...`` or ``none``."""
        return ", ".join(f"{o.key}={o.default}" for o in self.options) or "none"


@dataclass(frozen=True)
class Selection(Generic[T]):
    """A parsed spec: the entry, the options given (typed), and the spec text as given."""

    entry: Entry[T]
    options: dict[str, Any]
    spec: str

    @property
    def name(self) -> str:
        return self.entry.name

    def kwargs(self) -> dict[str, Any]:
        """The given options as the factory's keyword arguments."""
        by_key = {o.key: o for o in self.entry.options}
        return {by_key[k].argument: v for k, v in self.options.items()}

    def build(self, **context: Any) -> T:
        """Call the factory with the options and ``context`` (seed, rank, comm, ...)."""
        return self.entry.factory(**self.kwargs(), **context)


def options_from_defaults(
    defaults: Mapping[str, Any], parsers: Mapping[str, Callable[[str], Any]] | None = None
) -> tuple[Option, ...]:
    """One option per key, parsed by ``parsers[key]`` when given, else as its default's type."""
    chosen = parsers or {}
    return tuple(
        Option(key, chosen.get(key) or _PARSER_BY_TYPE.get(type(value), specs.text), value)
        for key, value in defaults.items()
    )


def options_from_signature(
    factory: Callable[..., Any],
    context: Sequence[str],
    parsers: Mapping[str, Callable[[str], Any]] | None = None,
) -> tuple[Option, ...]:
    """The factory's keyword parameters with defaults (other than ``context``) as options."""
    params = inspect.signature(factory).parameters.values()
    defaults = {
        p.name: p.default
        for p in params
        if p.name not in context and p.default is not inspect.Parameter.empty
    }
    return options_from_defaults(defaults, parsers)


class Registry(Generic[T]):
    """Named factories of one kind; ``context`` names the factory arguments that are not options."""

    def __init__(self, kind: str, *, context: Sequence[str] = ()) -> None:
        self.kind = kind
        self.context = tuple(context)
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        options: Sequence[Option] | None = None,
        parsers: Mapping[str, Callable[[str], Any]] | None = None,
        **info: Any,
    ) -> Entry[T]:
        """Add (or replace) ``name``. Options default to the factory's keyword parameters,
        parsed by ``parsers`` (by name) or as their defaults' types."""
        if not name or any(c in name for c in ":,= \t\n"):
            raise UsageError(f"bad {self.kind} name {name!r}: no ':', ',', '=' or spaces")
        if options is None:
            options = options_from_signature(factory, self.context, parsers)
        entry = Entry(name, factory, tuple(options), dict(info))
        self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> Entry[T]:
        entry = self._entries.get(name)
        if entry is None:
            raise UsageError(
                f"unknown {self.kind} {name!r}; choose from: {', '.join(self._entries)}"
            )
        return entry

    def select(self, spec: str) -> Selection[T]:
        """Parse and check ``spec``: known name, known keys given once, values that parse."""
        name, raw = specs.parse_spec(spec, self.kind)
        entry = self[name]
        by_key = {o.key: o for o in entry.options}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            option = by_key.get(key)
            if option is None:
                known = entry.describe_options()
                raise UsageError(f"{self.kind} {name}: unknown option {key!r} (options: {known})")
            try:
                values[key] = option.parse(value)
            except ValueError as exc:
                raise UsageError(f"{self.kind} {name}: {key}={value!r} is not {exc}") from None
        return Selection(entry, values, spec.strip())

    def build(self, spec: str, **context: Any) -> T:
        """The thing ``spec`` selects, built with ``context``."""
        return self.select(spec).build(**context)


def load_plugins() -> list[str]:
    """Import the modules that register user algorithms, encoders, optimizers or problems:
    those named in ``$HPCOPT_PLUGINS`` (comma-separated) and the ``hpcopt.plugins`` entry
    points of installed packages. UsageError naming the module when one fails to import."""
    from importlib.metadata import entry_points

    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    names += [ep.value for ep in entry_points(group=PLUGINS_GROUP)]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise UsageError(
                f"plugin {name!r} failed to load: {type(exc).__name__}: {exc}"
            ) from None
    return names
