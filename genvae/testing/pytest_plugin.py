"""Loaded by pytest through the ``pytest11`` entry point when genvae is installed.

Fixtures:
- ``genvae_builtin_plugins_only``: loads only the built-in plugins (no entry points, no
  ``GENVAE_PLUGINS`` modules) for a test.
- ``genvae_plugins``: a function ``(*plugin_objects) -> Plugins`` that makes the given plugin
  objects (modules or classes with ``@genvae.hookimpl`` functions) active for the test.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest


@pytest.fixture
def genvae_builtin_plugins_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from genvae.core.plugins import use_plugins

    monkeypatch.setenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("GENVAE_PLUGINS", raising=False)
    use_plugins(None)
    yield
    use_plugins(None)


@pytest.fixture
def genvae_plugins() -> Iterator[Callable[..., Any]]:
    from genvae.core.plugins import load_plugins, use_plugins

    def activate(*plugin_objects: Any) -> Any:
        plugins = load_plugins(extra=[(getattr(p, "__name__", repr(p)), p) for p in plugin_objects])
        use_plugins(plugins)
        return plugins

    yield activate
    use_plugins(None)
