"""One registry style for everything chosen by name: attacks, models, objectives, report sections, commands.

Each definition registers itself where it is written, as timm's ``@register_model`` does::

    ATTACKS = Registry("attack")

    @ATTACKS.register("deepfool", aliases=("df",), minimal=True)
    class DeepFool(MinimalNormAttack): ...

    ATTACKS.get("DeepFool")          # the class (case, ``_`` and aliases forgiven)
    ATTACKS.entry("df").meta         # {"minimal": True}
    list(ATTACKS)                    # every registered name, in registration order

An unknown name raises :class:`~robustlens.errors.ConfigError` listing the valid choices, so the command line, the
report and the tests can all enumerate from the same place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def default_key(name: str) -> str:
    """Registry key of a name: stripped, lower case, ``_`` and spaces read as ``-``."""
    return name.strip().lower().replace("_", "-").replace(" ", "-")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object: its canonical ``name``, the object, its aliases and free-form metadata."""

    name: str
    obj: T
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Objects of one ``kind`` by name, registered with a decorator beside their definition."""

    def __init__(self, kind: str, *, key: Callable[[str], str] = default_key) -> None:
        self.kind = kind
        self._key = key
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str | None = None, *, aliases: tuple[str, ...] = (),
                 **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name`` (default: its ``__name__``) and return it unchanged."""

        def deco(obj: T) -> T:
            self.add(name if name is not None else str(getattr(obj, "__name__", obj)), obj, aliases=aliases, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] = (), **meta: Any) -> T:
        """Register ``obj`` as ``name``; a name or alias already taken by another object is a :class:`ConfigError`."""
        key = self._key(name)
        for k in (key, *(self._key(a) for a in aliases)):
            owner = self._aliases.get(k, k if k in self._entries else None)
            if owner is not None and self._entries[owner].obj != obj:
                raise ConfigError(f"{self.kind} name {k!r} is already registered (to {owner!r}); choose another name")
        self._entries[key] = Entry(key, obj, tuple(self._key(a) for a in aliases), dict(meta))
        for a in aliases:
            self._aliases[self._key(a)] = key
        return obj

    def key(self, name: str) -> str:
        """The canonical name of ``name`` (an alias resolves to its entry); an unknown name is a ConfigError."""
        k = self._key(str(name))
        k = self._aliases.get(k, k)
        if k not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries) or '(none yet)'}")
        return k

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.key(name)]

    def get(self, name: str) -> T:
        """The object registered as ``name``."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Canonical names in registration order."""
        return list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        k = self._key(name)
        return k in self._entries or k in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


__all__ = ["Entry", "Registry", "default_key"]
