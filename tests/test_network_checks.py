"""A plugin's networks or objective that break the interface stop training at the first step with
one line (they trained silently, or failed with long tracebacks in figures and autograd)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import genvae
from genvae.cli import app
from genvae.core.interfaces import Architecture, PhaseOutput
from genvae.core.plugins import load_plugins, use_plugins
from genvae.plugins.architectures.mlp import MLPDecoder, MLPEncoder
from genvae.plugins.objectives.vae import VAE


class ShortDecoder(MLPDecoder):
    def forward(self, z, y=None):
        return super().forward(z, y)[:, :1]  # (B, 1) for 2-D data: broadcasts through the MSE


class OneRowEncoder(MLPEncoder):
    def forward(self, x, y=None):
        mu, logvar = super().forward(x, y)
        return mu[:1], logvar[:1]  # batch 1: broadcasts too


class ListEncoder(MLPEncoder):
    def forward(self, x, y=None):
        return [*super().forward(x, y), None]


class PerSampleLoss(VAE):
    def phase_loss(self, phase, ctx, models):
        out = super().phase_loss(phase, ctx, models)
        return PhaseOutput(out.loss * torch.ones(4), out.logs)


class BareTensorLoss(VAE):
    def phase_loss(self, phase, ctx, models):
        return super().phase_loss(phase, ctx, models).loss


class TrainsGenerator(VAE):
    def phases_at(self, step):
        from genvae.core.interfaces import Phase

        return (Phase("vae", trains=("generator",)),)


class Broken:
    @staticmethod
    @genvae.hookimpl
    def genvae_register_architectures(register):
        register("short-dec", Architecture(MLPEncoder, ShortDecoder))
        register("one-row", Architecture(OneRowEncoder, MLPDecoder))
        register("list-enc", Architecture(ListEncoder, MLPDecoder))

    @staticmethod
    @genvae.hookimpl
    def genvae_register_objectives(register):
        register("per-sample", PerSampleLoss)
        register("bare-tensor", BareTensorLoss)
        register("trains-generator", TrainsGenerator)


@pytest.fixture
def broken_plugins():
    use_plugins(load_plugins(extra=[("broken", Broken)]))
    yield
    use_plugins(None)


@pytest.mark.parametrize("arch, objective, expected", [
    ("short-dec", "vae", "architecture 'short-dec': its decoder returned (32, 1) for 32 codes; expected (32, 2), the batch by the data's sample shape"),
    ("one-row", "vae", "architecture 'one-row': its encoder returned mu (1, 2) and logvar (1, 2) for a batch of 32; expected (32, 2) each"),
    ("list-enc", "vae", "architecture 'list-enc': its encoder returned list; it must return (mu, logvar), two tensors of shape (batch, 2)"),
    ("mlp", "per-sample", "objective 'per-sample', phase 'vae': phase_loss returned a loss of (4,); the loss must be a scalar tensor"),
    ("mlp", "bare-tensor", "objective 'bare-tensor', phase 'vae': phase_loss returned Tensor; return genvae.PhaseOutput(loss, logs)"),
    ("mlp", "trains-generator", "objective 'trains-generator', phase 'vae' trains 'generator'; a phase trains one or more of the parts encoder, decoder"),
])  # fmt: skip
def test_the_first_step_checks_what_plugins_return(broken_plugins, tmp_path, arch, objective, expected):
    args = ["train", "--arch", arch, "--objective", objective, "--data", "8gaussians", "--steps", "3", "--batch-size", "32",
            "--set", "arch.hidden=8", "--no-progress", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in text
    assert f"error: {expected}" in text
    assert not (tmp_path / "run").exists()  # nothing trained, nothing left behind


def test_a_run_that_fails_before_its_first_step_leaves_no_default_directory(broken_plugins, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "--arch", "short-dec", "--objective", "vae", "--data", "8gaussians", "--steps", "3",
                                      "--set", "arch.hidden=8", "--no-progress"])  # fmt: skip
    assert result.exit_code != 0 and "its decoder returned" in result.output
    with pytest.raises(genvae.errors.PluginError):
        genvae.train(arch="short-dec", objective="vae", data="8gaussians", steps=3, settings={"arch.hidden": 8})
    assert list((tmp_path / "runs").iterdir()) == []  # the directories made for them are gone


def test_a_non_finite_loss_suggests_beta_neg_only_to_objectives_that_have_it(tmp_path):
    from genvae.errors import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"no checkpoint was written yet: train it again from step 0 with a lower learning rate, "
                                                 r"genvae.train\('\S+/vae', resume=True, settings={'optim.lr': 1e\+29}\)$"):  # step 2 (lr acts after step 1); precision is no already
        genvae.train(tmp_path / "vae", objective="vae", data="8gaussians", steps=3, batch_size=16,
                     settings={"arch.hidden": 8, "optim.lr": 1e30, "train.figures_every": 0})  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"settings={'optim.lr': 1e\+29} or a lower objective.beta_neg in a new run, or settings={'train.precision': 'no'}$"):
        genvae.train(tmp_path / "si", objective="soft-intro", data="8gaussians", steps=3, batch_size=16,
                     settings={"arch.hidden": 8, "optim.lr": 1e30, "train.figures_every": 0, "objective.num_vae": 0, "train.precision": "bf16"})  # fmt: skip
    # in Soft-IntroVAE's plain-VAE warm-up no β_neg acts: only the learning rate is suggested
    with pytest.raises(NonFiniteLossError, match=r"loss of phase 'vae' .*settings={'optim.lr': 1e\+29}\)$"):
        genvae.train(tmp_path / "warm-up", objective="soft-intro", data="8gaussians", steps=3, batch_size=16,
                     settings={"arch.hidden": 8, "optim.lr": 1e30, "train.figures_every": 0, "objective.num_vae": 10})  # fmt: skip


def test_checked_models_pass_well_behaved_networks_through_unchanged():
    from genvae.core.network_checks import CheckedModels

    enc, dec = MLPEncoder(data_shape=(2,), z_dim=3, hidden=8), MLPDecoder(data_shape=(2,), z_dim=3, hidden=8)
    models = CheckedModels(enc, dec, {"z": 3}, 2, architecture="mlp", sample_shape=(2,))
    x = torch.randn(5, 2)
    mu, logvar = models.encode(x)
    assert torch.equal(mu, enc(x)[0]) and torch.equal(models.decode(mu), dec(mu))


def test_a_run_of_an_uninstalled_plugin_says_which_plugin_is_missing(tmp_path):
    from genvae.core.run import load_run
    from genvae.errors import PluginError
    from genvae.plugins.objectives.vae import VAE

    class Mine:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_architectures(register):
            register("my-mlp", Architecture(MLPEncoder, MLPDecoder))

        @staticmethod
        @genvae.hookimpl
        def genvae_register_objectives(register):
            register("my-vae", VAE)

    use_plugins(load_plugins(extra=[("mine", Mine)]))
    try:
        genvae.train(tmp_path / "run", objective="my-vae", arch="my-mlp", data="8gaussians", steps=2, batch_size=16,
                     settings={"arch.hidden": 8, "train.figures_every": 0})  # fmt: skip
    finally:
        use_plugins(None)  # the plugin package is gone
    with pytest.raises(PluginError, match="architecture 'my-mlp', which this run was trained with, is not installed: install the plugin package"):
        load_run(tmp_path / "run")
    with pytest.raises(PluginError, match="objective 'my-vae', which this run was trained with, is not installed"):
        genvae.train(tmp_path / "run", steps=4, resume=True)


def test_an_objective_option_without_a_default_marks_its_plugin_broken():
    import dataclasses

    class NeedsBeta(VAE):
        @dataclasses.dataclass
        class Config:
            beta: float

    class Plugin:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_objectives(register):
            register("needs-beta", NeedsBeta)

    plugins = load_plugins(extra=[("needs", Plugin)])
    assert plugins.info["needs"].error == "genvae_register_objectives raised TypeError: objective 'needs-beta': its Config option(s) beta need a default (the value when a user sets none)"
