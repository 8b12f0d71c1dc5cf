"""Subnormal floats flushed to zero while training (genvae/core/denormals.py), and the caller's
setting restored."""

from __future__ import annotations

import numpy as np
import torch

import genvae
from genvae.core.denormals import denormals_flushed, flushing_denormals


def test_the_block_flushes_and_restores_the_callers_setting():
    for before in (False, True):
        torch.set_flush_denormal(before)
        assert flushing_denormals() is before
        with denormals_flushed():
            assert flushing_denormals()
            assert (torch.tensor([1e-30]) * 1e-10).item() == 0.0
        assert flushing_denormals() is before
    torch.set_flush_denormal(False)


def test_training_from_python_flushes_while_it_runs_and_leaves_the_setting_as_it_was(tmp_path, one_thread, monkeypatch):
    from genvae.core import trainer

    seen = []
    step = trainer.Trainer.train_step

    def watched(self, *args, **kwargs):
        seen.append(flushing_denormals())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(trainer.Trainer, "train_step", watched)
    torch.set_flush_denormal(False)
    points = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    genvae.train(tmp_path / "run", data=points, steps=2, batch_size=16, objective="vae", settings={"arch.hidden": 8, "train.figures_every": 0})
    assert seen == [True, True] and not flushing_denormals()


def test_genvae_train_and_bench_flush_in_the_whole_process(tmp_path, one_thread):
    """The command sets it before torch starts its worker threads, so that they flush too."""
    from typer.testing import CliRunner

    from genvae.cli import app

    torch.set_flush_denormal(False)
    try:
        result = CliRunner().invoke(app, ["train", "--objective", "vae", "--run-dir", str(tmp_path / "run"), "--steps", "1", "--batch-size", "16",
                                          "--set", "arch.hidden=8", "--set", "train.figures_every=0", "--no-progress"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert flushing_denormals()
        torch.set_flush_denormal(False)
        result = CliRunner().invoke(app, ["bench", "stability", "--out", str(tmp_path / "none"), "--report"])  # benches train too
        assert result.exit_code == 2 and flushing_denormals(), result.output
    finally:
        torch.set_flush_denormal(False)
