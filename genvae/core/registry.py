"""Name -> object tables filled by plugins, with duplicate checks and 'did you mean' errors."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from genvae.errors import PluginError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    plugin: str


class Registry(Generic[T]):
    """Registered objects of one kind ("objective", "architecture", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        # plugin name -> error, for plugins that failed to load: an unknown name may be theirs
        self.broken: dict[str, str] = {}

    def check_free(self, name: str, plugin: str = "?") -> None:
        """Raise PluginError unless ``name`` is a valid name that no plugin has registered yet."""
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered by both {other!r} and {plugin!r}; "
                f"rename it in {plugin!r}, or block one with GENVAE_BLOCK_PLUGINS={plugin}"
            )

    def register(self, name: str, value: T, *, plugin: str = "?") -> None:
        self.check_free(name, plugin)
        self._entries[name] = Entry(name, value, plugin)

    def get(self, name: str) -> T:
        return self.entry(name).value

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(unknown_name_message(self.kind, name, self.names(), self.broken)) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


def unknown_name_message(kind: str, name: str, available: list[str], broken: dict[str, str] | None = None) -> str:
    """``unknown objective 'sof-intro'; did you mean 'soft-intro'? available: intro, soft-intro, vae``

    ``broken`` (plugin name -> error) adds a note naming the plugins that failed to load, since
    the name may be one of theirs.
    """
    message = f"unknown {kind} {name!r}"
    same_but_case = [a for a in available if a.lower() == str(name).lower()]
    close = same_but_case or difflib.get_close_matches(str(name), available, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    else:
        message += ";"
    message += f" available: {', '.join(available) or '(none)'}"
    if broken:
        failures = "; ".join(f"plugin {plugin} failed to load: {error}" for plugin, error in sorted(broken.items()))
        message += f" (note: {failures}; see `genvae plugins list`)"
    return message
