"""Member r of a batched run equals the single run with the same config (losses to 1e-5)."""

from __future__ import annotations

import pytest
import torch

from genvae.batched import BatchedTrainer, member_configs, reference_single_run
from genvae.core.run import build_models

STEPS = 200
TOL = 1e-5
SMALL = dict(train={"batch_size": 32}, optim={"milestones": [120], "gamma": 0.5}, arch={"hidden": 32})


def reference_losses(cfg, data, steps: int) -> list[dict[str, float]]:
    """A plain single run, following the trainer's semantics step by step."""
    return reference_single_run(cfg, data, steps)


def _compare(bt: BatchedTrainer, r: int, ref: list[dict[str, float]]) -> float:
    worst = 0.0
    phases = {name for row in ref for name in row}
    for phase in phases:
        expected = [row[phase] for row in ref if phase in row]
        got = bt.history.loss_matrix(phase)[:, r].tolist()
        assert len(got) == len(expected), phase
        worst = max(worst, max(abs(a - b) for a, b in zip(expected, got)))
    return worst


@pytest.mark.parametrize(
    "objective, overrides",
    [
        # two members differing in seed AND in hyperparameters; a short warm-up runs both code paths
        ("soft-intro", [{"num_vae": 20, "beta_neg": 0.9}, {"num_vae": 20, "beta_neg": 0.5, "beta_kl": 0.2}]),
        # the authors' stop-gradients in both phases, with a γ_r large enough to matter
        ("soft-intro", [{"num_vae": 20, "encoder_fake_grad": "target", "decoder_fake_grad": "reconstructions", "gamma_r": g} for g in (0.5, 0.1)]),
        ("intro", [{"num_vae": 20, "m": 1.0}, {"num_vae": 20, "m": 3.0, "beta_rec": 0.5}]),
        ("vae", [{"beta_kl": 0.05}, {"beta_kl": 0.5}]),
    ],
)
def test_member_equals_single_run(objective, overrides):
    cfgs, data = member_configs(objective, "8gaussians", seeds=[3], overrides=overrides, **SMALL)
    cfgs[1].train.seed = 4  # the second member also has another seed
    bt = BatchedTrainer(cfgs, data)
    bt.fit(STEPS)
    for r, cfg in enumerate(cfgs):
        worst = _compare(bt, r, reference_losses(cfg, data, STEPS))
        assert worst < TOL, f"member {r}: max |Δloss| = {worst:.3g}"
    # the members really differ
    first = bt.history.loss_matrix(bt.objective.phases_at(STEPS - 1)[0].name)[-1]
    assert first[0] != first[1]


@pytest.mark.parametrize("optim", [{}, {"grad_clip": 1e-3, "lr_encoder": 5e-4, "lr_decoder": 1e-4}])
def test_member_equals_lead_trainer(tmp_path, optim):
    """Against genvae.core.trainer.Trainer.train_step (the real single-run code), with Adam's betas
    not the defaults; then also with a grad_clip small enough to clip every phase's gradient and
    a learning rate of each part's own."""
    trainer_mod = pytest.importorskip("genvae.core.trainer")
    steps = 40
    # the batched Adam takes the betas too (it had the defaults)
    other_betas = {**SMALL, "optim": {**SMALL["optim"], "betas": [0.5, 0.9], **optim}}
    cfgs, data = member_configs("soft-intro", "8gaussians", seeds=[0, 1], overrides=[{"num_vae": 10}], **other_betas)
    trainers = [trainer_mod.Trainer(cfg, data, tmp_path / f"run{r}", progress=False) for r, cfg in enumerate(cfgs)]
    device = trainers[0].accelerator.device  # the GPU where there is one: compare on the same device
    tol = TOL if device.type == "cpu" else 1e-3
    bt = BatchedTrainer(cfgs, data, device=str(device))
    bt.fit(steps)
    for r, tr in enumerate(trainers):
        batches = iter(tr.stream)
        worst = 0.0
        for step in range(steps):
            logs = tr.train_step(next(batches))
            tr.step += 1
            for phase in ("vae", "encoder", "decoder"):
                if f"loss_{phase}" in logs:
                    got = bt.history.losses[phase]
                    idx = step if phase == "vae" else step - 10
                    worst = max(worst, abs(logs[f"loss_{phase}"].item() - got[idx][r].item()))
        assert worst < tol, f"member {r}: max |Δloss| vs Trainer = {worst:.3g}"


def test_clip_scales_each_members_gradient_to_the_bound():
    """Per member, the gradients of all the trained tensors together are scaled by
    min(1, c / (‖g‖ + 1e-6)), as torch.nn.utils.clip_grad_norm_ does for a single run."""
    from types import SimpleNamespace

    grads = {"encoder": {"w": torch.tensor([[3.0, 0.0], [0.3, 0.0]]), "b": torch.tensor([[4.0], [0.4]])}}
    BatchedTrainer._clip(SimpleNamespace(R=2, grad_clip=1.0), grads)
    coef = 1.0 / (5.0 + 1e-6)  # member 0: ‖(3, 0, 4)‖ = 5 > 1; member 1: ‖(0.3, 0, 0.4)‖ = 0.5 ≤ 1, unchanged
    torch.testing.assert_close(grads["encoder"]["w"], torch.tensor([[3.0 * coef, 0.0], [0.3, 0.0]]))
    torch.testing.assert_close(grads["encoder"]["b"], torch.tensor([[4.0 * coef], [0.4]]))


def test_final_parameters_match_and_export():
    cfgs, data = member_configs("vae", "2spirals", seeds=[0, 1], **SMALL)
    bt = BatchedTrainer(cfgs, data)
    bt.fit(5)
    enc, dec = bt.member_modules(1)
    torch.manual_seed(1)
    ref_enc, _ = build_models(cfgs[1], data)
    # after training the weights moved away from the initialization but keep the shapes
    for (k, a), (_, b) in zip(enc.state_dict().items(), ref_enc.state_dict().items()):
        assert a.shape == b.shape
    assert not torch.equal(enc.state_dict()["net.0.weight"], ref_enc.state_dict()["net.0.weight"])


def test_mismatched_members_rejected():
    from genvae.errors import ConfigError

    cfgs, data = member_configs("soft-intro", "8gaussians", seeds=[0], overrides=[{"num_vae": 0}, {"num_vae": 5}], **SMALL)
    with pytest.raises(ConfigError):
        BatchedTrainer(cfgs, data)


def test_device_choice_and_its_errors():
    from genvae.batched import resolve_device
    from genvae.errors import ConfigError

    assert resolve_device(None).type == "cpu" and resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="cpu, cuda"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_members_on_the_gpu_follow_the_cpu_members():
    cfgs, data = member_configs("soft-intro", "8gaussians", seeds=[0, 1], overrides=[{"num_vae": 10}], **SMALL)
    on_cpu, on_gpu = BatchedTrainer(cfgs, data), BatchedTrainer(cfgs, data, device="cuda")
    on_cpu.fit(40)
    on_gpu.fit(40)
    for phase in ("vae", "encoder", "decoder"):
        torch.testing.assert_close(on_gpu.history.loss_matrix(phase).cpu(), on_cpu.history.loss_matrix(phase), rtol=1e-3, atol=1e-3)
    enc, _ = on_gpu.member_modules(1)
    assert next(enc.parameters()).device.type == "cpu"


def test_continued_run_equals_straight_run(tmp_path):
    """Saved every few steps, reloaded into a fresh trainer and continued across the warm-up's
    end and a learning-rate milestone: the same parameters, Adam state and history, bit for bit."""
    small = dict(train={"batch_size": 32}, optim={"milestones": [12], "gamma": 0.5}, arch={"hidden": 16})
    cfgs, data = member_configs("soft-intro", "8gaussians", seeds=[0, 1], overrides=[{"num_vae": 6}], **small)
    straight = BatchedTrainer(cfgs, data)
    straight.fit(20)

    state = tmp_path / "state.pt"
    crashed = BatchedTrainer(cfgs, data)
    crashed.fit(9, checkpoint=state, checkpoint_every=4)  # saved at 4, 8 and 9 (the end)
    crashed.fit(11)  # trained on after its last save, then "lost"
    continued = BatchedTrainer(cfgs, data)
    continued.load(state)
    assert continued.step == 9
    continued.fit(20)

    for part in straight.params:
        for k, v in straight.params[part].items():
            assert torch.equal(v, continued.params[part][k]), (part, k)
        a, b = straight.optimizers[part].state_dict()["state"], continued.optimizers[part].state_dict()["state"]
        assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
        assert straight.optimizers[part].param_groups[0]["lr"] == continued.optimizers[part].param_groups[0]["lr"]
    assert continued.history.steps == list(range(20))
    for phase in straight.history.losses:
        assert torch.equal(straight.history.loss_matrix(phase), continued.history.loss_matrix(phase)), phase
    with pytest.raises(Exception, match="members"):
        BatchedTrainer(cfgs[:1], data).load(state)


def _compiled_matches_eager(objective: str, overrides: list[dict], steps: int) -> None:
    cfgs, data = member_configs(objective, "8gaussians", seeds=[3], overrides=overrides, **SMALL)
    eager, compiled = BatchedTrainer(cfgs, data), BatchedTrainer(cfgs, data, compile=True)
    eager.fit(steps)
    compiled.fit(steps)
    assert set(compiled.history.losses) == set(eager.history.losses)
    for phase in eager.history.losses:
        a, b = eager.history.loss_matrix(phase), compiled.history.loss_matrix(phase)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), f"{phase}: max |Δloss| = {(a - b).abs().max():.3g}"
    for part in eager.params:
        for k, v in eager.params[part].items():
            assert torch.allclose(v, compiled.params[part][k], rtol=1e-4, atol=1e-6), f"{part}.{k}"


def test_compiled_step_equals_eager():
    """torch.compile of the vmapped step (mode reduce-overhead on a GPU): same losses and weights,
    members with different hyperparameters, the step counter passed through (not baked in)."""
    _compiled_matches_eager("vae", [{"beta_kl": 0.05}, {"beta_kl": 0.5}], steps=6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective, overrides",
    [
        ("soft-intro", [{"num_vae": 3, "beta_neg": 0.9}, {"num_vae": 3, "beta_neg": 0.5, "beta_kl": 0.2}]),
        ("intro", [{"num_vae": 3, "m": 1.0}, {"num_vae": 3, "m": 3.0}]),
    ],
)
def test_compiled_two_phase_step_equals_eager(objective, overrides):
    """Across the warm-up switch: the phases' compiled variants and the dynamic step."""
    _compiled_matches_eager(objective, overrides, steps=8)


def test_a_save_that_fails_before_its_rename_keeps_the_previous_state(tmp_path, monkeypatch):
    """The state goes to a temporary file, flushed to disk (fsync) before it is renamed over the
    previous one: a disk error there (or a power cut) leaves the previous state readable."""
    import errno
    import os

    cfgs, data = member_configs("vae", "8gaussians", seeds=[0], **SMALL)
    bt = BatchedTrainer(cfgs, data)
    state = tmp_path / "state.pt"
    bt.fit(2, checkpoint=state, checkpoint_every=2)
    before = state.read_bytes()
    bt.fit(3)

    def disk_error(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", disk_error)
    with pytest.raises(OSError, match="Input/output error"):
        bt.save(state)
    assert state.read_bytes() == before
    monkeypatch.undo()
    again = BatchedTrainer(cfgs, data)
    again.load(state)
    assert again.step == 2
