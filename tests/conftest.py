"""Shared fixtures: tests see only the built-in plugins unless they add their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker: two workers with two OpenMP threads each on two cores spin
    # against each other and run many times slower
    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _builtin_plugins_only(monkeypatch):
    from genvae.core.plugins import use_plugins

    monkeypatch.setenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("GENVAE_PLUGINS", raising=False)
    use_plugins(None)
    yield
    use_plugins(None)


@pytest.fixture
def one_thread():
    """One torch thread for the test: two threads on two busy cores are many times slower than
    one for small convolutions."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA
