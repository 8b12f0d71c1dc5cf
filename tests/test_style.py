"""Style-based architecture and progressive growing (issue: the paper's FFHQ / CelebA-HQ model)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from genvae.core.config import merge_user
from genvae.core.progressive import GrowConfig, GrowthSchedule, level_images
from genvae.core.run import ResolvedConfig, load_run, resolve
from genvae.core.trainer import train
from genvae.errors import ConfigError
from genvae.plugins.architectures.style import StyleDecoder, StyleEncoder, channel_statistics, level_channels
from genvae.testing import ArchitectureContract

TINY = {"z_dim": 8, "w_dim": 16, "start_channels": 4, "max_channels": 8, "mapping_layers": 2, "encoder_mapping_layers": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


class TestStyleContract(ArchitectureContract):
    arch_name = "style"
    arch_options = TINY
    data_shape = (3, 16, 16)
    num_classes = 3
    unused_parameters = ("to_rgb.[01].*", "from_rgb.[01].*")  # the 4x4 and 8x8 paths, at 16x16


def tiny(shape=(3, 16, 16), seed=0, **kw):
    torch.manual_seed(seed)
    options = {**TINY, **kw}
    return StyleEncoder(shape, **options).eval(), StyleDecoder(shape, **options).eval()


def grow(modules, level, alpha):
    for m in modules:
        m.set_growth(level, alpha)


# --------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------


def test_channels_per_level_follow_the_authors_ffhq_config():
    # START_CHANNEL_COUNT 64, MAX_CHANNEL_COUNT 512, 256x256: 4x4 ... 256x256
    assert level_channels(256, 64, 512) == [512, 512, 512, 512, 256, 128, 64]
    enc, dec = StyleEncoder((3, 32, 32), **TINY), StyleDecoder((3, 32, 32), **TINY)
    assert enc.num_levels == dec.num_levels == 4 and dec.num_style_layers == 8
    assert len([m for m in dec.mapping if isinstance(m, torch.nn.Module) and hasattr(m, "weight")]) == 2


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_shapes_at_every_level(level):
    enc, dec = tiny((3, 32, 32))
    grow((enc, dec), level, 0.5 if level else 1.0)
    size = 4 * 2**level
    mu, logvar = enc(torch.rand(2, 3, size, size))
    assert mu.shape == logvar.shape == (2, 8)
    assert dec(mu).shape == (2, 3, size, size)
    # the encoder also takes full-resolution images and pools them to its level
    assert torch.allclose(enc(torch.ones(2, 3, 32, 32))[0], enc(torch.ones(2, 3, size, size))[0], atol=1e-5)


def test_decoder_blend_is_continuous():
    enc, dec = tiny((3, 32, 32))
    z = torch.randn(3, 8)
    with torch.no_grad():
        grow([dec], 1, 1.0)
        old = dec(z)
        grow([dec], 2, 0.0)
        assert torch.allclose(dec(z), F.interpolate(old, scale_factor=2, mode="nearest"), atol=1e-6)  # alpha = 0
        grow([dec], 2, 1.0)
        full = dec(z)
        dec.to_rgb[1].weight.add_(1.0)  # the old path's to-RGB no longer contributes at alpha = 1
        assert torch.equal(dec(z), full)
        grow([dec], 2, 0.5)
        assert not torch.allclose(dec(z), full)


def test_encoder_blend_is_continuous():
    enc, _ = tiny((3, 32, 32))
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        grow([enc], 1, 1.0)
        old = enc(F.avg_pool2d(x, 2))[0]
        grow([enc], 2, 0.0)
        assert torch.allclose(enc(x)[0], old, atol=1e-5)  # alpha = 0: the previous level's function
        grow([enc], 2, 1.0)
        full = enc(x)[0]
        enc.from_rgb[1].weight.add_(1.0)
        assert torch.equal(enc(x)[0], full)


def test_encoder_styles_are_the_instance_norm_statistics():
    """w = C_1 [mu(y_1), sigma(y_1)] + C_dense(flatten(IN(y_1))) at 4x4, by hand."""
    enc, _ = tiny((3, 8, 8))
    grow([enc], 0, 1.0)
    x = torch.rand(2, 3, 4, 4)
    block = enc.blocks[0]
    with torch.no_grad():
        h = F.leaky_relu(enc.from_rgb[0](2 * x - 1), 0.2)  # the networks work in [-1, 1]
        y1 = F.leaky_relu(block.conv1(h), 0.2)
        mean, std = y1.mean(dim=(2, 3)), y1.var(dim=(2, 3), unbiased=False).add(1e-8).sqrt()
        normed = (y1 - mean[..., None, None]) / std[..., None, None]
        expected = block.style1(torch.cat([mean, std], 1)) + block.dense(normed.flatten(1))
        assert torch.allclose(enc.styles(x), expected, atol=1e-5)
    # instance normalisation removes exactly the statistics it reports
    t = torch.randn(2, 5, 6, 6) * 3 + 1
    n, m, s = channel_statistics(t)
    assert torch.allclose(n * s[..., None, None] + m[..., None, None], t, atol=1e-5)


def test_truncation_and_style_mixing():
    _, dec = tiny()
    z, z2 = torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(dec.sample(z), dec(z), atol=1e-6)
        at_mean = dec.sample(z, truncation=0.0)
        assert torch.allclose(at_mean, at_mean[:1].expand_as(at_mean), atol=1e-5)  # every image is the average style
        assert torch.allclose(dec.sample(z, mix_z=z2, crossover=0), dec(z2), atol=1e-6)
        assert torch.allclose(dec.sample(z, mix_z=z2, crossover=dec.num_style_layers), dec(z), atol=1e-6)
        mixed = dec.sample(z, mix_z=z2, crossover=2)
        assert not torch.allclose(mixed, dec(z)) and not torch.allclose(mixed, dec(z2))


def test_noise_inputs_come_from_the_given_source_in_training_only():
    _, dec = tiny()
    for layer in (dec.blocks[1].layer1, dec.blocks[1].layer2):
        torch.nn.init.ones_(layer.noise_weight)
    grow([dec], 2, 1.0)
    z = torch.randn(2, 8)
    dec.train()
    g = lambda seed: (lambda t, gen=torch.Generator().manual_seed(seed): torch.randn(t.shape, generator=gen))  # noqa: E731
    assert torch.equal(dec(z, noise=g(1)), dec(z, noise=g(1)))
    assert not torch.equal(dec(z, noise=g(1)), dec(z, noise=g(2)))
    dec.eval()
    assert torch.equal(dec(z, noise=g(1)), dec(z, noise=g(2)))  # deterministic in eval mode


def test_bad_geometry_is_a_clear_error():
    with pytest.raises(ConfigError, match="power-of-two"):
        StyleEncoder((3, 24, 24), **TINY)
    with pytest.raises(ConfigError, match="images"):
        StyleDecoder((2,), **TINY)


# --------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------


def test_schedule_levels_alpha_and_per_level_settings():
    cfg = GrowConfig(start_resolution=8, images_per_level=40, fade=0.5, batch_sizes=[99, 10, 10, 20], lrs=[1e-3, 2e-3], beta_neg=[2048, 1024, 512])
    s = GrowthSchedule(cfg, final_level=3, batch_size=4, lr=5e-4)
    # 8x8: 4 steps of 10; 16x16: 4 steps of 10; 32x32: 2 steps of 20, then stays there
    assert s.starts == [0, 4, 8]
    assert [s.at(t) for t in range(4)] == [(1, 1.0)] * 4  # the first level does not fade
    assert [s.at(t) for t in range(4, 9)] == [(2, 0.0), (2, 0.5), (2, 1.0), (2, 1.0), (3, 0.0)]
    assert s.at(9) == (3, 1.0) and s.at(1000) == (3, 1.0)
    assert (s.batch_size(3), s.batch_size(7), s.lr(1), s.lr(5), s.beta_neg(1), s.beta_neg(6)) == (20, 20, 2e-3, 2e-3, 1024, 512)
    assert GrowthSchedule(cfg, 3, 4, 5e-4, world_size=2).starts == [0, 2, 4]  # images count over all processes
    for bad, match in [({"start_resolution": 6}, "power of two"), ({"start_resolution": 64}, "above"), ({"images_per_level": 0}, "images_per_level")]:
        with pytest.raises(ConfigError, match=match):
            GrowthSchedule(GrowConfig(**{"start_resolution": 4, "images_per_level": 8, **bad}), 3, 4, 1e-3)


def test_real_images_fade_like_the_generated_ones():
    x = torch.rand(2, 3, 32, 32)
    coarse = F.interpolate(F.avg_pool2d(x, 4), scale_factor=2, mode="nearest")
    assert torch.allclose(level_images(x, 2, 0.0), coarse, atol=1e-6)
    assert torch.allclose(level_images(x, 2, 1.0), F.avg_pool2d(x, 2), atol=1e-6)
    assert torch.allclose(level_images(x, 3, 0.25), 0.75 * F.interpolate(F.avg_pool2d(x, 2), scale_factor=2) + 0.25 * x, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Training across levels, resume mid-transition
# --------------------------------------------------------------------------------------------


def growing_config(steps: int, **extra):
    settings = [f"arch.{k}={json.dumps(v)}" for k, v in TINY.items()] + [
        "grow.start_resolution=4", "grow.images_per_level=32", "grow.batch_sizes=[8, 8, 4]", "grow.beta_neg=[64, 32, 16]",
        "train.batch_size=8", f"train.steps={steps}", "train.log_every=1", "train.checkpoint_every=5", "objective.num_vae=2",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return resolve(merge_user(None, settings, {"objective.name": "soft-intro", "arch.name": "style", "data.name": "digits"}))


def test_training_grows_through_the_levels(tmp_path):
    cfg, data = growing_config(14)  # digits are 16x16: 4 steps at 4x4, 4 at 8x8, then 16x16 (batch 4)
    result = train(cfg, data, tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["resolution"] for r in log] == [4] * 4 + [8] * 4 + [16] * 6
    assert [r["alpha"] for r in log[4:8]] == [0.0, 0.5, 1.0, 1.0]
    assert all(torch.isfinite(torch.tensor(r["loss_decoder"])) for r in log[2:])
    assert sorted(p.name for p in (tmp_path / "run" / "levels").iterdir()) == ["16px", "4px", "8px"]
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer.json").read_text())
    assert {k: state[k] for k in ("step", "resolution", "alpha")} == {"step": 14, "resolution": 16, "alpha": 1.0}
    run = load_run(tmp_path / "run")
    assert run.models.decode(torch.randn(2, 8)).shape == (2, 1, 16, 16)
    assert result.step == 14


def test_scale_constant_is_the_final_resolutions_at_every_level(tmp_path):
    """s = 1 / (C·H·W) of the full-size images while training at 4x4 too, as the authors'
    MODEL.SCALE (their beta_neg of 2048 at 4x4 assumes it)."""
    from genvae.core.trainer import Trainer

    cfg, data = growing_config(3)
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False)
    trainer.fit()
    assert trainer.models.decode(torch.randn(2, 8, device=trainer.accelerator.device)).shape[-1] == 4  # still at the first level
    assert trainer.objective.scale(trainer.models) == 1 / (1 * 16 * 16)


def test_decoder_works_in_minus_one_to_one():
    """The decoder's output y leaves as (y + 1) / 2 (the authors' networks see x / 127.5 - 1):
    a zero to-RGB layer gives mid-grey, not black. (The encoder's 2x - 1 is in the hand
    computation of test_encoder_styles_are_the_instance_norm_statistics.)"""
    _, dec = tiny()
    with torch.no_grad():
        dec.to_rgb[-1].weight.zero_()
        assert torch.equal(dec(torch.randn(2, 8)), torch.full((2, 3, 16, 16), 0.5))


def test_resume_in_the_middle_of_a_transition_equals_training_straight_through(tmp_path):
    cfg, data = growing_config(12)
    train(cfg, data, tmp_path / "straight", progress=False)
    half = ResolvedConfig.from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": 6}})
    train(half, data, tmp_path / "resumed", progress=False)  # its last step ran at 8x8 with alpha 0.5
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "trainer.json").read_text())["alpha"] == 0.5
    train(cfg, data, tmp_path / "resumed", resume=True, progress=False)
    for part in ("encoder", "decoder"):
        w1 = load_file(str(tmp_path / "straight" / part / "model.safetensors"))
        w2 = load_file(str(tmp_path / "resumed" / part / "model.safetensors"))
        assert all(torch.equal(w1[k], w2[k]) for k in w1), part


def test_grow_needs_a_growing_architecture():
    with pytest.raises(ConfigError, match="cannot grow"):
        resolve(merge_user(None, ["grow.start_resolution=4"], {"arch.name": "residual", "data.name": "digits"}))


# --------------------------------------------------------------------------------------------
# FFHQ / CelebA-HQ and sampling from the command line
# --------------------------------------------------------------------------------------------


def write_faces(folder, n):
    from PIL import Image

    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        pixels = (torch.rand(20, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")


def test_face_datasets_split_like_the_paper_and_carry_its_recipe(tmp_path):
    from genvae.core.plugins import get_plugins

    write_faces(tmp_path / "faces", 7)
    ffhq = get_plugins().datasets.get("ffhq")(path=str(tmp_path / "faces"), resolution=16)
    assert (ffhq.split_size("train"), ffhq.split_size("test")) == (6, 1)  # 60,000 / 10,000 in proportion
    assert ffhq.split_files("test") == ffhq.files[6:]
    assert ffhq.get(torch.tensor([0, 5])).x.shape == (2, 3, 16, 16)
    cfg, _ = resolve(merge_user(None, [f"data.path={tmp_path / 'faces'}", "data.resolution=16"], {"arch.name": "style", "data.name": "celeba-hq"}))
    # the authors' celeba-hq256.yaml: BETA_REC 0.05 for images in [-1, 1] is 0.2 for genvae's [0, 1]
    assert (cfg.objective["beta_rec"], cfg.objective["beta_kl"]) == (0.2, 0.1)
    assert cfg.grow.start_resolution == 4 and cfg.grow.beta_neg[:4] == [2048, 2048, 2048, 1024]
    assert cfg.grow.batch_sizes[:3] == [128, 128, 128] and cfg.optim.betas == [0.0, 0.99] and cfg.arch["z_dim"] == 512
    with pytest.raises(ConfigError, match="data.path"):
        get_plugins().datasets.get("ffhq")()


def test_sample_with_truncation_and_mixing_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from genvae.cli import app

    cfg, data = growing_config(3)  # still at 4x4: samples are enlarged to the data's 16x16
    train(cfg, data, tmp_path / "run", progress=False)
    runner = CliRunner()
    for extra in ([], ["--truncation", "0.5"], ["--mix", "1"]):
        out = tmp_path / f"s{len(extra)}{extra[-1] if extra else ''}.pt"
        result = runner.invoke(app, ["sample", str(tmp_path / "run"), "--num-samples", "4", "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        assert torch.load(out).shape == (4, 1, 16, 16)
    layers = load_run(tmp_path / "run").decoder.num_style_layers
    for mix in (99, layers, 0):  # 0 and the layer count would not mix: the plain samples of one of the two z
        result = runner.invoke(app, ["sample", str(tmp_path / "run"), "--num-samples", "4", "--mix", str(mix)])
        assert result.exit_code == 2 and f"--mix must be in 1..{layers - 1}" in result.output and f"got {mix}" in result.output
