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


@pytest.fixture(scope="session")
def digits_run_dir(tmp_path_factory) -> Path:
    """A VAE (MLP, z = 4) trained 5 steps on the embedded digits: a real run directory for the
    evaluation commands. Tests that change it must copy it first."""
    from genvae.core.config import merge_user
    from genvae.core.plugins import use_plugins
    from genvae.core.run import resolve
    from genvae.core.trainer import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "1")  # built-ins only, as _builtin_plugins_only
        use_plugins(None)
        run_dir = tmp_path_factory.mktemp("digits") / "run"
        sets = ["train.checkpoint_every=0", "train.figures_every=0", "train.log_every=0", "arch.hidden=32", "arch.z_dim=4"]
        cfg, data = resolve(merge_user(None, sets, {"objective.name": "vae", "arch.name": "mlp", "data.name": "digits", "train.steps": 5}))
        train(cfg, data, run_dir, progress=False)
        use_plugins(None)
    return run_dir
