"""Trainer: it learns, resumes exactly, stops clearly on non-finite losses, writes atomically."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

import genvae
from genvae.core.config import merge_user
from genvae.core.plugins import load_plugins, use_plugins
from genvae.core.run import ResolvedConfig, load_run, resolve
from genvae.core.trainer import train
from genvae.errors import ConfigError, NonFiniteLossError, RunDirError


def small_config(objective="soft-intro", steps=40, **sets):
    overrides = [f"train.{k}={v}" for k, v in {"steps": steps, "batch_size": 64, "log_every": 1, "checkpoint_every": 0, **sets}.items()]
    overrides += ["arch.hidden=32", "objective.num_vae=10"] if objective == "soft-intro" else ["arch.hidden=32"]
    return resolve(merge_user(None, overrides, {"objective.name": objective}))


def losses(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective", ["vae", "intro", "soft-intro"])
def test_each_objective_trains_and_exports(tmp_path, objective):
    cfg, data = small_config(objective, steps=30)
    result = train(cfg, data, tmp_path / "run", progress=False)
    assert result.step == 30
    run = load_run(tmp_path / "run")
    assert not run.encoder.training  # reloaded networks are in eval mode
    names = {p.name for p in result.figures}
    assert {"samples.png", "density.png", "losses.png"} <= names
    for part in ("encoder", "decoder"):
        meta = json.loads((tmp_path / "run" / part / "config.json").read_text())
        assert meta["architecture"] == "mlp" and meta["config"]["hidden"] == 32
        assert load_file(str(tmp_path / "run" / part / "model.safetensors"))


def test_resume_continues_exactly(tmp_path):
    cfg, data = small_config(steps=60, checkpoint_every=30)
    train(cfg, data, tmp_path / "straight", progress=False)

    half = ResolvedConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": 30}})
    train(half, data, tmp_path / "resumed", progress=False)
    train(cfg, data, tmp_path / "resumed", resume=True, progress=False)

    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == list(range(1, 61))
    for a, b in zip(straight, resumed):
        for key in a:
            if key != "steps_per_s":
                assert a[key] == pytest.approx(b[key], abs=1e-6, rel=1e-6), (a["step"], key)
    w1 = load_file(str(tmp_path / "straight" / "decoder" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "resumed" / "decoder" / "model.safetensors"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_compiled_networks_train_as_the_eager_ones(tmp_path):
    """train.compile: same losses to float rounding; the exported networks are plain modules."""
    cfg, data = small_config(steps=14)
    compiled, _ = small_config(steps=14, compile="true")
    train(cfg, data, tmp_path / "eager", progress=False)
    train(compiled, data, tmp_path / "compiled", progress=False)
    for a, b in zip(losses(tmp_path / "eager"), losses(tmp_path / "compiled"), strict=True):
        for key in a:
            if key != "steps_per_s":
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)
    assert json.loads((tmp_path / "compiled" / "config.json").read_text())["train"]["compile"] is True
    assert not any(k.startswith("_orig_mod") for k in load_file(str(tmp_path / "compiled" / "decoder" / "model.safetensors")))


def test_resume_after_a_crash_forgets_the_steps_logged_after_the_checkpoint(tmp_path):
    cfg, data = small_config(steps=20, checkpoint_every=10)
    train(cfg, data, tmp_path / "straight", progress=False)

    def crash_at_15(record):
        if record["step"] == 15:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "crashed", progress=False, on_log=crash_at_15)
    assert [r["step"] for r in losses(tmp_path / "crashed")][-1] == 15
    train(cfg, data, tmp_path / "crashed", resume=True, progress=False)
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "crashed")
    assert [r["step"] for r in resumed] == list(range(1, 21))
    for a, b in zip(straight, resumed):
        assert a.keys() == b.keys()
        assert [a[k] for k in a if k != "steps_per_s"] == pytest.approx([b[k] for k in a if k != "steps_per_s"], abs=1e-6, rel=1e-6)


def test_existing_run_dir_needs_resume(tmp_path):
    cfg, data = small_config(steps=2)
    train(cfg, data, tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match="already exists; pass --resume"):
        train(cfg, data, tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match="no checkpoint to resume from"):
        train(cfg, data, tmp_path / "empty", resume=True, progress=False)


@dataclass
class ExplodingConfig:
    explode_at: int = 7


class Exploding(genvae.Objective):
    """The VAE loss, but inf from step ``explode_at`` on."""

    Config = ExplodingConfig
    phases = (genvae.Phase("vae", ("encoder", "decoder")),)

    def begin_step(self, batch, models, step):
        return {"batch": batch, "step": step}

    def phase_loss(self, phase, ctx, models):
        from genvae.plugins.objectives.vae import vae_loss

        out = vae_loss(ctx["batch"], models, 1.0, 1.0, "mse")
        if ctx["step"] >= self.config.explode_at:
            out.logs["rec"] = torch.tensor(float("inf"))
            out.loss = out.loss + out.logs["rec"]
        return out


class ExplodingPlugin:
    @staticmethod
    @genvae.hookimpl
    def genvae_register_objectives(register):
        register("exploding", Exploding)


def test_non_finite_loss_stops_with_the_step_the_term_and_the_kept_checkpoint(tmp_path):
    use_plugins(load_plugins(extra=[("exploding", ExplodingPlugin)]))
    cfg, data = resolve(merge_user(None, ["train.steps=20", "train.batch_size=16", "train.checkpoint_every=5", "arch.hidden=16"], {"objective.name": "exploding"}))
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg, data, tmp_path / "run", progress=False)
    message = str(info.value)
    assert "in step 8" in message and "rec=inf" in message and "the checkpoint after step 5 is kept" in message
    assert f"genvae train --run-dir {tmp_path / 'run'} --resume --set optim.lr=2e-05" in message  # the resume it suggests is allowed
    checkpoint = tmp_path / "run" / "checkpoint"
    assert json.loads((checkpoint / "trainer.json").read_text())["step"] == 5
    assert not (tmp_path / "run" / "checkpoint.tmp").exists()
    note = json.loads((tmp_path / "run" / "stopped.json").read_text())  # what genvae info shows
    assert (note["step"], note["checkpoint_step"], note["reason"]) == (7, 5, message)


def test_a_trained_run_without_its_checkpoint_is_not_trained_again_from_step_0(tmp_path):
    """A deleted or damaged checkpoint folder made --resume start again from step 0, overwriting
    the log and the exports of the steps trained."""
    import shutil

    cfg, data = small_config(steps=10, checkpoint_every=5)
    train(cfg, data, tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "log.jsonl").read_text()
    shutil.rmtree(tmp_path / "run" / "checkpoint")
    with pytest.raises(RunDirError, match=r"trained to step 10 \(its exports or log say so\) but holds no complete checkpoint .* resuming would start again"):
        train(cfg, data, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "log.jsonl").read_text() == log
    from genvae.run_info import run_info

    info = run_info(tmp_path / "run")
    assert info["state"] == "trained to step 10, but its checkpoint folder is missing or damaged" and "--resume refuses" in info["next"]
    for part in ("encoder", "decoder"):  # the exports gone too: the log, past the first checkpoint's step, still tells
        shutil.rmtree(tmp_path / "run" / part)
    with pytest.raises(RunDirError, match="trained to step 10"):
        train(cfg, data, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "log.jsonl").read_text() == log


def test_a_finished_checkpoint_tmp_left_by_a_crash_mid_swap_is_resumed(tmp_path):
    """After one crash left only checkpoint.old, the next save removed it before moving its new
    checkpoint.tmp in: a crash in between left a complete checkpoint.tmp alone, which was ignored."""
    from genvae.core.checkpoint import find_checkpoint, swap_in_directory

    cfg, data = small_config(steps=10, checkpoint_every=5)
    train(cfg, data, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    (run / "checkpoint").rename(run / "checkpoint.tmp")  # the state such a crash leaves
    assert find_checkpoint(run) == run / "checkpoint.tmp"
    longer, _ = small_config(steps=12, checkpoint_every=5)
    assert train(longer, data, run, resume=True, progress=False).steps_run == 2  # from step 10, not 0
    (run / "new").mkdir()
    (run / "new" / "trainer.json").write_text("{}")
    (run / "checkpoint").rename(run / "checkpoint.old")  # only .old, as a crash between the renames leaves it

    def crash(*_):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", crash)  # killed before the new checkpoint is in place
        with pytest.raises(KeyboardInterrupt):
            swap_in_directory(run / "new", run / "checkpoint")
    assert find_checkpoint(run) == run / "checkpoint.old"  # kept until then
    swap_in_directory(run / "new", run / "checkpoint")
    assert (run / "checkpoint" / "trainer.json").read_text() == "{}" and not (run / "checkpoint.old").exists()


@pytest.mark.parametrize(
    "milestone, rates",
    [
        (7, [2e-4] * 5 + [1e-4] + [5e-5] * 4),  # the new rate, then its milestone decay (logged after step 7)
        (5, [2e-4] * 4 + [1e-4] + [5e-5] * 5),  # resumed at the milestone: the new rate comes decayed by it
    ],
)
def test_a_resume_may_lower_the_learning_rate(tmp_path, milestone, rates):
    settings = {"arch.hidden": 16, "train.figures_every": 0, "train.log_every": 1, "train.checkpoint_every": 5, "optim.milestones": [milestone], "optim.gamma": 0.5}
    genvae.train(tmp_path / "run", objective="vae", data="8gaussians", steps=5, batch_size=16, settings=settings)
    with pytest.warns(UserWarning, match="resume=True: optim.lr changes from 0.0002 to 0.0001 from the checkpoint on"):
        genvae.train(tmp_path / "run", steps=10, resume=True, settings={"optim.lr": 1e-4})
    assert [r["lr"] for r in losses(tmp_path / "run")] == pytest.approx(rates)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["optim"]["lr"] == 1e-4
    with pytest.raises(ConfigError, match=r"optim.gamma cannot change \(only .*the learning rates \(optim.lr"):
        genvae.train(tmp_path / "run", steps=12, resume=True, settings={"optim.gamma": 0.1})


def test_run_files_get_the_permissions_the_umask_gives(tmp_path):
    """Atomic writes create files as open() does (0666 less the umask), not mkstemp's 0600."""
    cfg, data = small_config(steps=2)
    old = os.umask(0o027)
    try:
        train(cfg, data, tmp_path / "run", progress=False)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {"config.json", "trainer.json", "model.safetensors", "log.jsonl"} <= {p.name for p in files}
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o640} == {}
    assert not [p for p in files if p.suffix == ".tmp"]


def test_config_round_trip_and_validation(tmp_path):
    cfg, _ = small_config()
    again, _ = resolve(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(cfg.to_dict()))
    assert resolve(merge_user(saved, [], {}))[0].to_dict() == cfg.to_dict()
    toml = tmp_path / "run.toml"
    toml.write_text('[objective]\nname = "intro"\nm = 3\n[train]\nsteps = 5\n')
    from_file, _ = resolve(merge_user(toml, ["objective.beta_neg=0.7"], {}))
    assert (from_file.objective["m"], from_file.objective["beta_neg"], from_file.train.steps) == (3.0, 0.7, 5)
    assert from_file.objective["beta_rec"] == 0.3  # Table 5 (8 Gaussians, IntroVAE) filled in
    with pytest.raises(ConfigError, match="unknown option objective.beta_nge; did you mean 'beta_neg'"):
        resolve(merge_user(None, ["objective.beta_nge=1"], {}))
    with pytest.raises(ConfigError, match="train.steps = 'many' has the wrong type; expected int"):
        resolve(merge_user(None, ["train.steps=many"], {}))
    assert resolve(merge_user(None, ["train.log_with=tensorboard"], {}))[0].train.log_with == ["tensorboard"]  # one name: a list of one
    with pytest.raises(ConfigError, match=r"optim.milestones = 100 has the wrong type; expected a list such as \[1, 2\] of int"):
        resolve(merge_user(None, ["optim.milestones=100"], {}))
    with pytest.raises(ConfigError, match=r"expected float or a table such as \{a=1.0, b=2.0\} of float"):
        resolve(merge_user(None, ["objective.name=soft-intro", 'objective.beta_neg={"class": 1}'], {}))
    lord = ["objective.name=soft-intro", "arch.name=lord", "data.name=shapes3d-synthetic"]
    per_group, _ = resolve(merge_user(None, [*lord, "objective.beta_neg={class=256, content=512}"], {}))
    assert per_group.objective["beta_neg"] == {"class": 256.0, "content": 512.0}
    with pytest.raises(ConfigError, match=r"names latent groups \['class', 'content'\], but architecture 'mlp' has \['z'\]"):
        resolve(merge_user(None, ["objective.name=soft-intro", "objective.beta_neg={class=256, content=512}"], {}))
    with pytest.raises(ConfigError, match="objective.beta_kl must be a number >= 0"):
        resolve(merge_user(None, ["objective.beta_kl=-1"], {}))
    with pytest.raises(ConfigError, match="unknown architecture option arch.colour for 'mlp'; valid: depth, hidden, output, z_dim"):
        resolve(merge_user(None, ["arch.colour=3"], {}))


def test_free_heap_memory_is_returned_on_linux():
    import sys

    from genvae.core.memory import release_free_memory

    assert release_free_memory() == sys.platform.startswith("linux")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_evaluation_view_takes_cpu_tensors_whatever_the_networks_device(tmp_path, device):
    """Figures and metrics draw their inputs on the CPU; the view moves them to the networks (on a
    GPU after GPU training) and gives the outputs back on the CPU, equal to CPU networks' outputs."""
    from genvae.core.run import models_view

    cfg, data = small_config("vae", steps=2)
    train(cfg, data, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    x, z = data.test_batch(16).x, torch.randn(16, sum(run.encoder.latent_groups.values()))
    mu_cpu, logvar_cpu = run.models.encode(x)
    dec_cpu = run.models.decode(z)
    view = models_view(run.encoder.to(device), run.decoder.to(device), run.data, torch.Generator().manual_seed(0))
    mu, logvar = view.encode(x)
    dec = view.decode(z)
    assert mu.device.type == logvar.device.type == dec.device.type == "cpu"
    torch.testing.assert_close((mu, logvar, dec), (mu_cpu, logvar_cpu, dec_cpu), rtol=1e-4, atol=1e-5)
    noise = view.randn_like(torch.zeros(3, 2, device=device))
    assert noise.device.type == device and torch.equal(noise.cpu(), torch.randn(3, 2, generator=torch.Generator().manual_seed(0)))


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch):
    import errno

    import genvae.core.trainer as trainer_module

    cfg, data = small_config(steps=10, checkpoint_every=5)
    real_export = trainer_module.export_component
    calls = []

    def export_until_full(module, directory, *args, **kwargs):
        calls.append(directory)
        if len(calls) > 4:  # the second checkpoint (two parts into tmp, two exports each time)
            raise OSError(errno.ENOSPC, "No space left on device", str(directory))
        return real_export(module, directory, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "export_component", export_until_full)
    with pytest.raises(RunDirError, match=r"writing the checkpoint of step 10 into .* failed \(no space left on device\); the checkpoint "
                                          r"after step 5 is kept; free some disk space, then continue with genvae train --run-dir"):
        train(cfg, data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.tmp").exists()
    assert json.loads((tmp_path / "run" / "checkpoint" / "trainer.json").read_text())["step"] == 5


def test_exports_of_two_steps_are_not_scored_as_a_pair(tmp_path):
    """A kill between writing the encoder's and the decoder's export leaves them of different steps."""
    import shutil

    cfg, data = small_config(steps=10, checkpoint_every=5)
    train(cfg, data, tmp_path / "early", progress=False)
    shutil.copytree(tmp_path / "early", tmp_path / "run")
    longer, _ = small_config(steps=15, checkpoint_every=5)
    train(longer, data, tmp_path / "run", resume=True, progress=False)
    shutil.rmtree(tmp_path / "run" / "decoder")
    shutil.copytree(tmp_path / "early" / "decoder", tmp_path / "run" / "decoder")  # the step-10 decoder beside the step-15 encoder
    with pytest.warns(UserWarning, match=r"its encoder export is of step 15 and its decoder's of step 10 .* using the pair saved with the checkpoint"):
        loaded = load_run(tmp_path / "run")
    checkpoint_decoder = load_file(str(tmp_path / "run" / "checkpoint" / "decoder" / "model.safetensors"))
    assert loaded.step == 15 and all(torch.equal(checkpoint_decoder[k], v) for k, v in loaded.decoder.state_dict().items() if k in checkpoint_decoder)
    shutil.rmtree(tmp_path / "run" / "decoder")
    with pytest.raises(RunDirError, match=r"run/decoder is missing or incomplete; copy .*run/checkpoint/decoder \(the same export"):
        load_run(tmp_path / "run")


def test_log_every_0_logs_at_the_end_only_as_the_other_intervals(tmp_path):
    cfg, data = small_config(steps=5, log_every=0)
    train(cfg, data, tmp_path / "run", progress=False)
    assert [r["step"] for r in losses(tmp_path / "run")] == [5]  # it logged every step


def _record_optimizer_steps(trainer, steps: int) -> list[tuple[int, str, float, float]]:
    """Train ``steps`` steps; for every optimizer step, (step, part, its learning rate, the norm of
    the gradients of the parts that the stepping phase trains)."""
    seen: list[tuple[int, str, float, float]] = []

    def before_step(optimizer, args, kwargs, part):
        trains = next(phase.trains for phase in trainer.objective.phases_at(trainer.step) if part in phase.trains)
        trained = [p.grad for name in trains for p in trainer.parts[name].parameters()]
        seen.append((trainer.step, part, optimizer.param_groups[0]["lr"], torch.linalg.vector_norm(torch.stack([g.norm() for g in trained])).item()))

    for part, optimizer in trainer.optimizers.items():
        torch_optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper holds the torch Adam
        torch_optimizer.register_step_pre_hook(lambda o, a, k, part=part: before_step(o, a, k, part))
    batches = iter(trainer.stream)
    for _ in range(steps):
        trainer.train_step(next(batches))
        trainer.step += 1
    return seen


def test_each_part_steps_once_a_step_at_its_own_rate_decayed_from_the_milestone_on(tmp_path):
    """optim.lr_encoder / lr_decoder are the two Adams' rates; MultiStepLR multiplies them by γ for
    the steps from each milestone on (0-based step index ≥ milestone: `milestones: [3]` decays the
    4th step); each part's Adam steps once per step, in the warm-up (one joint phase) and in the
    game (Alg. 2: UpdateEncoder, then UpdateDecoder)."""
    from genvae.core.trainer import Trainer

    sets = ["train.batch_size=16", "train.checkpoint_every=0", "arch.hidden=8", "objective.num_vae=2",
            "optim.lr_encoder=0.001", "optim.lr_decoder=0.004", "optim.milestones=[3]", "optim.gamma=0.1"]  # fmt: skip
    cfg, data = resolve(merge_user(None, sets, {"objective.name": "soft-intro", "data.name": "8gaussians", "train.steps": 5}))
    seen = _record_optimizer_steps(Trainer(cfg, data, tmp_path / "run", progress=False), 5)
    expected = [(step, part, base * (0.1 if step >= 3 else 1.0)) for step in range(5) for part, base in (("encoder", 1e-3), ("decoder", 4e-3))]
    assert [(step, part) for step, part, _, _ in seen] == [(step, part) for step, part, _ in expected]
    assert [lr for _, _, lr, _ in seen] == pytest.approx([lr for _, _, lr in expected], rel=1e-12)


@pytest.mark.parametrize("objective", ["vae", "soft-intro"])
def test_grad_clip_bounds_the_norm_of_each_phases_gradient(tmp_path, objective):
    """optim.grad_clip: each phase's gradient, over the parts that phase trains (not the frozen
    part's stale gradient), is scaled to norm grad_clip before its step (torch's clip_grad_norm_:
    g·c/(‖g‖ + 1e-6)); a tiny bound makes every step clip."""
    from genvae.core.trainer import Trainer

    sets = ["train.batch_size=16", "train.checkpoint_every=0", "arch.hidden=8", "optim.grad_clip=0.001"]
    sets += ["objective.num_vae=1"] if objective == "soft-intro" else []  # a warm-up step, then the game
    cfg, data = resolve(merge_user(None, sets, {"objective.name": objective, "data.name": "8gaussians", "train.steps": 4}))
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False)
    clipped: list[set[str]] = []
    clip = trainer.accelerator.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        clipped.append({name for name, m in trainer.parts.items() for p in m.parameters() if any(p is q for q in parameters)})
        return clip(parameters, max_norm, *args, **kwargs)

    trainer.accelerator.clip_grad_norm_ = spy
    seen = _record_optimizer_steps(trainer, 4)
    both, game = {"encoder", "decoder"}, [{"encoder"}, {"decoder"}]
    assert clipped == ([both] * 4 if objective == "vae" else [both] + game * 3)
    assert len(seen) == 8
    assert [norm for *_, norm in seen] == pytest.approx([1e-3] * 8, rel=1e-3)


@pytest.mark.parametrize("write", ["text", "safetensors"])
def test_an_atomic_write_that_fails_before_its_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, write):
    """The new content goes to a temporary file that is flushed to disk (fsync) and only then
    renamed over the old one: a disk error at the flush leaves the old file as it was."""
    import errno

    from genvae.core.checkpoint import atomic_save_file, atomic_write_text

    path = tmp_path / ("trainer.json" if write == "text" else "model.safetensors")
    if write == "text":
        path.write_text("old")
    else:
        atomic_save_file({"w": torch.zeros(3)}, path)
    before = path.read_bytes()

    def disk_error(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", disk_error)
    with pytest.raises(OSError, match="Input/output error"):
        if write == "text":
            atomic_write_text(path, "new")
        else:
            atomic_save_file({"w": torch.ones(3)}, path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names the flushed files through /proc")
def test_a_checkpoints_files_are_on_disk_before_its_trainer_json_marks_it_complete(tmp_path, monkeypatch):
    """After a power cut the newest checkpoint with a trainer.json is resumed (and the one before
    it is gone): every other file of it must have been flushed before trainer.json was written,
    and the renames that swap it in before the previous checkpoint is removed."""
    cfg, data = small_config(steps=2)
    flushed: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    run = tmp_path / "run"
    train(cfg, data, run, progress=False)
    tmp = str(run / "checkpoint.tmp")
    marker = next(i for i, name in enumerate(flushed) if name.startswith(f"{tmp}/.trainer.json."))
    files = [p.relative_to(run / "checkpoint") for p in (run / "checkpoint").rglob("*") if p.is_file() and p.name != "trainer.json"]
    assert len(files) >= 6  # the Accelerate state (optimizers, random states, custom objects) and both exports
    assert [str(f) for f in files if f"{tmp}/{f}" not in flushed[:marker]] == []
    assert str(run) in flushed[marker:]  # the directory holding the renamed checkpoint


def test_find_checkpoint_takes_the_newest_complete_copy(tmp_path):
    """A crash between the two renames of a swap leaves checkpoint.old (the previous one) and a
    complete checkpoint.tmp (the newer one); a crash while writing leaves a checkpoint.tmp without
    its trainer.json, which is never taken."""
    from genvae.core.checkpoint import find_checkpoint

    def make(name, complete=True):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "trainer.json").write_text("{}")

    make("checkpoint.old")
    make("checkpoint.tmp", complete=False)
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint.old"
    (tmp_path / "checkpoint.tmp" / "trainer.json").write_text("{}")
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint.tmp"
    make("checkpoint", complete=False)  # a folder without its trainer.json is no checkpoint, even under this name
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint.tmp"


def test_a_swap_killed_while_removing_a_copy_leaves_a_complete_checkpoint(tmp_path, monkeypatch):
    """Only the replaced copy (renamed to checkpoint.old) is ever deleted: a kill in the middle of
    that deletion leaves the new checkpoint whole."""
    import shutil

    from genvae.core.checkpoint import find_checkpoint, swap_in_directory

    for name, step in (("checkpoint", 5), ("checkpoint.tmp", 10)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights").write_text(str(step))
        (tmp_path / name / "trainer.json").write_text(json.dumps({"step": step}))

    def killed_midway(path, *args, **kwargs):
        (path / "weights").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        swap_in_directory(tmp_path / "checkpoint.tmp", tmp_path / "checkpoint")
    found = find_checkpoint(tmp_path)
    assert found is not None and json.loads((found / "trainer.json").read_text())["step"] == 10 and (found / "weights").read_text() == "10"


def test_a_run_killed_while_writing_its_first_checkpoint_is_trained_again_from_step_0(tmp_path):
    """The log line of step checkpoint_every is written before that step's checkpoint: a run whose
    log ends there may have died writing it (nothing to lose), one whose log goes further trained
    past a checkpoint that is now missing."""
    from genvae.core.checkpoint import trained_without_checkpoint

    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 6)))
    assert trained_without_checkpoint(tmp_path, checkpoint_every=5) is None
    with open(log, "a") as f:
        f.write(json.dumps({"step": 6}) + "\n")
    assert trained_without_checkpoint(tmp_path, checkpoint_every=5) == 6


@dataclass
class GlobalDrawConfig:
    beta_kl: float = 1.0


class GlobalDraw(genvae.Objective):
    """The VAE loss, plus a logged number drawn from torch's global generator (as a plugin's
    dropout or noise would draw)."""

    Config = GlobalDrawConfig
    phases = (genvae.Phase("vae", ("encoder", "decoder")),)

    def begin_step(self, batch, models, step):
        return {"batch": batch}

    def phase_loss(self, phase, ctx, models):
        from genvae.plugins.objectives.vae import vae_loss

        out = vae_loss(ctx["batch"], models, 1.0, self.config.beta_kl, "mse")
        out.logs["global_draw"] = torch.rand(())
        return out


class GlobalDrawPlugin:
    @staticmethod
    @genvae.hookimpl
    def genvae_register_objectives(register):
        register("global-draw", GlobalDraw)


def test_a_resumed_run_continues_torchs_global_random_numbers(tmp_path):
    """The checkpoint keeps the global random state (Accelerate's random_states_0.pkl): an objective
    that draws from it gets the numbers of an uninterrupted run after a resume."""
    use_plugins(load_plugins(extra=[("global-draw", GlobalDrawPlugin)]))
    settings = ["train.batch_size=16", "train.log_every=1", "train.checkpoint_every=5", "arch.hidden=16"]
    cfg, data = resolve(merge_user(None, ["train.steps=10", *settings], {"objective.name": "global-draw"}))
    half, _ = resolve(merge_user(None, ["train.steps=5", *settings], {"objective.name": "global-draw"}))
    train(cfg, data, tmp_path / "straight", progress=False)
    train(half, data, tmp_path / "resumed", progress=False)
    train(cfg, data, tmp_path / "resumed", resume=True, progress=False)
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == list(range(1, 11))
    assert [r["global_draw"] for r in resumed] == [r["global_draw"] for r in straight]


def test_a_new_learning_rate_on_resume_is_decayed_by_the_milestones_already_passed(tmp_path):
    """Resumed at the milestone's step (3): the new rate 1e-4 continues as 1e-4·γ, as a run started
    with it would be by then."""
    settings = {"arch.hidden": 16, "train.figures_every": 0, "train.log_every": 1, "train.checkpoint_every": 3, "optim.milestones": [3], "optim.gamma": 0.5}
    genvae.train(tmp_path / "run", objective="vae", data="8gaussians", steps=3, batch_size=16, settings=settings)
    with pytest.warns(UserWarning, match="optim.lr changes from 0.0002 to 0.0001"):
        genvae.train(tmp_path / "run", steps=6, resume=True, settings={"optim.lr": 1e-4})
    assert [r["lr"] for r in losses(tmp_path / "run")] == pytest.approx([2e-4, 2e-4, 1e-4, 5e-5, 5e-5, 5e-5])


def test_resume_takes_the_checkpoints_networks_not_older_exports(tmp_path):
    """A kill between swapping in a checkpoint and refreshing RUN/encoder and RUN/decoder leaves
    exports of the previous checkpoint's step: the resume must still start from the checkpoint's."""
    import shutil

    cfg, data = small_config(steps=15, checkpoint_every=5)
    train(cfg, data, tmp_path / "straight", progress=False)
    five, _ = small_config(steps=5, checkpoint_every=5)
    ten, _ = small_config(steps=10, checkpoint_every=5)
    train(five, data, tmp_path / "run", progress=False)
    shutil.copytree(tmp_path / "run", tmp_path / "at5")
    train(ten, data, tmp_path / "run", resume=True, progress=False)
    for part in ("encoder", "decoder"):
        shutil.rmtree(tmp_path / "run" / part)
        shutil.copytree(tmp_path / "at5" / part, tmp_path / "run" / part)
    train(cfg, data, tmp_path / "run", resume=True, progress=False)
    for a, b in zip(losses(tmp_path / "straight"), losses(tmp_path / "run"), strict=True):
        assert [a[k] for k in a if k != "steps_per_s"] == pytest.approx([b[k] for k in a if k != "steps_per_s"], abs=1e-6, rel=1e-6)
