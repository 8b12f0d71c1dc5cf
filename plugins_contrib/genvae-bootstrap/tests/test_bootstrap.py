"""The plugin as a user installs it: discovered through its entry point, contract-tested,
with its target decoder in the resumable state."""

from __future__ import annotations

import json

import pytest
import torch

from genvae.core.config import merge_user
from genvae.core.plugins import get_plugins, use_plugins
from genvae.core.run import resolve
from genvae.core.trainer import Trainer, train
from genvae.testing import ObjectiveContract


@pytest.fixture(autouse=True)
def _installed_plugins(monkeypatch):
    monkeypatch.delenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    use_plugins(None)
    yield
    use_plugins(None)


class TestBootstrapContract(ObjectiveContract):
    objective_name = "soft-intro-bootstrap"
    objective_options = {"num_vae": 0, "target_every": 5}


def test_discovered_through_the_entry_point():
    info = get_plugins().info["bootstrap"]
    assert (info.distribution, info.error) == ("genvae-bootstrap", None)
    assert info.registers == {"objective": ["soft-intro-bootstrap"]}


def config(steps, **sets):
    overrides = [f"train.steps={steps}", "train.batch_size=32", "train.log_every=1", "arch.hidden=16",
                 "objective.num_vae=2", "objective.target_every=4"] + [f"train.{k}={v}" for k, v in sets.items()]
    return resolve(merge_user(None, overrides, {"objective.name": "soft-intro-bootstrap"}))


def test_target_decoder_lags_the_decoder_and_is_never_trained(tmp_path):
    trainer = Trainer(*config(6, checkpoint_every=0), tmp_path / "run", progress=False)
    batches = iter(trainer.stream)
    for _ in range(6):
        trainer.train_step(next(batches))
        trainer.step += 1
    target, decoder = trainer.objective.target.state_dict(), trainer.parts["decoder"].state_dict()
    assert trainer.objective.target_step == 4
    assert not all(torch.equal(target[k], decoder[k]) for k in target)  # copied at step 4, trained since
    assert all(not p.requires_grad for p in trainer.objective.target.parameters())


def test_resume_restores_the_target_decoder(tmp_path):
    cfg, data = config(10, checkpoint_every=5)
    train(cfg, data, tmp_path / "straight", progress=False)
    half = resolve({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": 5}})[0]
    train(half, data, tmp_path / "resumed", progress=False)
    train(cfg, data, tmp_path / "resumed", resume=True, progress=False)
    straight = [json.loads(l) for l in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    resumed = [json.loads(l) for l in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    for a, b in zip(straight, resumed):
        assert a["loss_encoder" if "loss_encoder" in a else "loss_vae"] == pytest.approx(
            b["loss_encoder" if "loss_encoder" in b else "loss_vae"], rel=1e-6, abs=1e-7)
