"""A small named registry: how petclick is extended by configuration (a YAML name plus one entry).

Networks (petclick.networks), click encodings (petclick.clicks.encoding) and post-processing rules
(petclick.postprocess) each keep one Registry; a YAML value names an entry. An unknown name is an
InputError that lists the known ones, so a typo never falls through to some other entry's rule.
Entries keep their registration order (post-processing applies its rules in that order).
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from petclick.core.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (`kind` names it in errors: "network", "click encoding", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name` (lower-case); a second entry of the same name is a programming error."""
        key = str(name).strip().lower()
        if key in self._entries:
            raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[key] = entry
        return entry

    def add(self, name: str) -> Callable[[T], T]:
        """Decorator form of `register`: `@REGISTRY.add("edt")`."""
        return lambda entry: self.register(name, entry)

    def canonical(self, name: object, source: str | None = None) -> str:
        """The registered (lower-case) name; anything else raises InputError naming `source` and the known names."""
        key = str(name).strip().lower()
        if key not in self._entries:
            raise InputError(source or self.kind,
                             f"unknown {self.kind} {name!r}; known: {', '.join(self._entries) or '(none)'}")
        return key

    def get(self, name: object, source: str | None = None) -> T:
        """The entry of `name` (see `canonical` for unknown names)."""
        return self._entries[self.canonical(name, source)]

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return str(name).strip().lower() in self._entries

    def __len__(self) -> int:
        return len(self._entries)
