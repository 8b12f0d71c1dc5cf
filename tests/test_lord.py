"""LORD two-encoder architecture, shapes3d-synthetic, image translation, VGG perceptual loss."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import warnings

import pytest
import torch

from genvae.core.config import merge_user
from genvae.core.interfaces import Batch, Models
from genvae.core.losses import kl_per_group
from genvae.core.plugins import get_plugins
from genvae.core.run import load_run, resolve
from genvae.core.trainer import train
from genvae.errors import ConfigError, DataError
from genvae.plugins.architectures.lord import N_ADAIN, LORDDecoder, LORDEncoder, adain
from genvae.plugins.datasets.shapes3d_synthetic import NUM_CLASSES, Shapes3DSynthetic, render
from genvae.plugins.objectives.soft_intro import DECODER_PHASE, ENCODER_PHASE, SoftIntroConfig, SoftIntroVAE
from genvae.viz.images import TRANSLATION_CAPTION, caption_height

TINY = {"class_dim": 8, "content_dim": 4, "channels": [8, 8, 16, 16], "fc_dim": 16, "adain_dim": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_models(shape=(3, 32, 32), seed=0, **kw):
    torch.manual_seed(seed)
    options = {**TINY, **kw}
    return LORDEncoder(shape, **options), LORDDecoder(shape, **options)


# --------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------


def test_paper_sizes_at_64():
    enc, dec = LORDEncoder((3, 64, 64)), LORDDecoder((3, 64, 64))
    assert enc.latent_groups == {"class": 256, "content": 128}
    assert [m.out_channels for m in enc.class_encoder.conv if isinstance(m, torch.nn.Conv2d)] == [64, 128, 256, 256]
    assert len([m for m in enc.content_encoder.fc if isinstance(m, torch.nn.Linear)]) == 3
    assert len([m for m in dec.fc if isinstance(m, torch.nn.Linear)]) == 3
    convs = [m for m in dec.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6 and dec.h0 == 64 // 2**N_ADAIN
    assert enc.config["channels"] == [64, 128, 256, 256] and isinstance(enc.config["data_shape"], list)
    json.dumps(enc.config), json.dumps(dec.config)  # JSON-able


def test_shapes_and_output_range():
    enc, dec = tiny_models()
    x = torch.rand(5, 3, 32, 32)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (5, 12)
    out = dec(torch.randn(5, 12) * 5)
    assert out.shape == (5, 3, 32, 32) and out.min() >= 0 and out.max() <= 1  # sigmoid
    # groups laid out class first: the class code is produced by the class encoder only
    mu_class, _ = enc.class_encoder(x)
    assert torch.allclose(mu[:, :8], mu_class)


def test_grey_images_and_bad_configs():
    enc, dec = tiny_models((1, 16, 16))
    assert dec(enc(torch.rand(2, 1, 16, 16))[0]).shape == (2, 1, 16, 16)
    with pytest.raises(ConfigError, match="multiple of 16"):
        LORDDecoder((3, 24, 24), **TINY)
    with pytest.raises(ConfigError, match="unsupervised"):
        LORDEncoder((3, 32, 32), num_classes=10, **TINY)
    with pytest.raises(ConfigError, match="images"):
        LORDEncoder((2,), **TINY)


def test_adain_statistics():
    x = torch.randn(3, 5, 8, 8) * 4 + 2
    scale, shift = torch.rand(3, 5) + 0.5, torch.randn(3, 5)
    y = adain(x, scale, shift)
    assert torch.allclose(y.mean(dim=(2, 3)), shift, atol=1e-5)
    assert torch.allclose(y.std(dim=(2, 3), unbiased=False), scale, atol=1e-3)


def test_class_code_conditions_through_adain_only():
    _, dec = tiny_models()
    dec.eval()
    z = torch.randn(4, 12)
    base = dec(z)
    z2 = z.clone()
    z2[:, :8] = torch.randn(4, 8)  # another class code
    changed = dec(z2)
    assert (changed - base).abs().max() > 1e-3
    z2[:, :8] = z[:, :8]  # back
    assert torch.equal(dec(z2), base)
    # the class code only sets the AdaIN parameters: with the same parameters, same output
    scale, shift = dec.adain_params(z[:, :8])
    scale2, _ = dec.adain_params(torch.randn(4, 8))
    assert not torch.allclose(scale, scale2)
    assert scale.shape == shift.shape == (4, N_ADAIN, TINY["adain_dim"])
    # content changes the output too
    z3 = z.clone()
    z3[:, 8:] = torch.randn(4, 4)
    assert (dec(z3) - base).abs().max() > 1e-3


def test_soft_intro_step_has_one_kl_per_group_with_dict_beta_neg():
    enc, dec = tiny_models()
    models = Models(enc, dec, dict(enc.latent_groups), 3 * 32 * 32, torch.Generator().manual_seed(0))
    objective = SoftIntroVAE(SoftIntroConfig(beta_rec=0.5, beta_kl=1.0, beta_neg={"class": 1024.0, "content": 2048.0}))
    batch = Batch(torch.rand(4, 3, 32, 32))
    ctx = objective.begin_step(batch, models, step=0)
    enc_out = objective.phase_loss(ENCODER_PHASE, ctx, models)
    dec_out = objective.phase_loss(DECODER_PHASE, ctx, models)
    for key in ("kl_class", "kl_content", "kl_fake_class", "kl_fake_content"):
        assert key in enc_out.logs and torch.isfinite(enc_out.logs[key])
    assert {"kl_fake_dec_class", "kl_fake_dec_content"} <= set(dec_out.logs)
    kls = kl_per_group(ctx["mu"], ctx["logvar"], models.latent_groups)
    assert torch.allclose(enc_out.logs["kl_class"], kls["class"].mean())
    assert torch.isfinite(enc_out.loss) and torch.isfinite(dec_out.loss)
    # the content group's β_neg weighs the content KL only: doubling it changes the loss
    objective2 = SoftIntroVAE(SoftIntroConfig(beta_rec=0.5, beta_kl=1.0, beta_neg={"class": 1024.0, "content": 4096.0}))
    models.generator = torch.Generator().manual_seed(0)
    ctx2 = objective2.begin_step(batch, models, step=0)
    assert not torch.allclose(objective2.phase_loss(ENCODER_PHASE, ctx2, models).loss, enc_out.loss)
    with pytest.raises(ConfigError, match="no weight for latent group 'content'"):
        SoftIntroVAE(SoftIntroConfig(beta_neg={"class": 1.0})).phase_loss(ENCODER_PHASE, ctx, models)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def test_dataset_is_deterministic_and_resumable():
    data = Shapes3DSynthetic(resolution=32)
    assert data.shape == (3, 32, 32) and data.num_classes == NUM_CLASSES == 12 and data.kind == "images"
    a, b = data.train_stream(8, seed=3), data.train_stream(8, seed=3)
    first_a, first_b = next(iter(a)), next(iter(b))
    assert torch.equal(first_a.x, first_b.x) and torch.equal(first_a.y, first_b.y)
    assert first_a.x.min() >= 0 and first_a.x.max() <= 1
    state = a.state_dict()
    nxt = next(iter(a))
    a.load_state_dict(state)
    assert torch.equal(next(iter(a)).x, nxt.x)
    assert not torch.equal(next(iter(data.train_stream(8, seed=4))).x, first_a.x)
    assert torch.equal(data.test_batch(6, seed=1).x, data.test_batch(6, seed=1).x)
    with pytest.raises(ConfigError):
        Shapes3DSynthetic(resolution=40)


def test_render_is_consistent():
    data = Shapes3DSynthetic(resolution=32)
    x, y, poses = data.draw_with_poses(10, seed=0)
    assert torch.equal(data.render(y, poses), x)  # the batch is exactly the rendering of its labels
    assert torch.equal(render(int(y[0]), poses[0], 32), x[0])  # single image form
    pose = torch.tensor([0.3, 0.1, -0.1])
    images = data.render(torch.arange(NUM_CLASSES), pose.expand(NUM_CLASSES, 3))
    flat = images.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(NUM_CLASSES) * 1e3).min() > 0.5  # classes differ
    # the pose matters, also the rotation of a circle (patterns break the symmetry)
    for cls in range(NUM_CLASSES):
        rotated = data.render(cls, torch.tensor([0.3 + math.pi / 2, 0.1, -0.1]))
        moved = data.render(cls, torch.tensor([0.3, -0.1, 0.1]))
        assert (rotated - images[cls]).abs().sum() > 1.0 and (moved - images[cls]).abs().sum() > 1.0
    # a full turn is the same image
    assert torch.allclose(data.render(5, torch.tensor([0.3 + 2 * math.pi, 0.1, -0.1])), images[5], atol=1e-4)


def test_shapes_option_draws_only_those_identities():
    everything = Shapes3DSynthetic(resolution=16)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    # the default draws what torch.randint over all twelve ids draws (runs from before the option)
    assert torch.equal(everything.draw(64, g1).y, torch.randint(0, NUM_CLASSES, (64,), generator=g2))
    ids = torch.arange(NUM_CLASSES)
    assert torch.equal(everything.other_class(ids), (ids + 1) % NUM_CLASSES)
    squares = Shapes3DSynthetic(resolution=16, shapes=["square"])
    _, y, _ = squares.draw_with_poses(200, seed=0)
    assert set(y.tolist()) == {3, 4, 5}  # square x the three patterns
    assert squares.other_class(torch.tensor([3, 4, 5])).tolist() == [4, 5, 3]
    two = Shapes3DSynthetic(resolution=16, shapes=["cross", "circle"])  # order does not matter
    assert two.class_ids.tolist() == [0, 1, 2, 9, 10, 11]
    for bad in (["hexagon"], [], ["square", "square"]):
        with pytest.raises(ConfigError, match="data.shapes"):
            Shapes3DSynthetic(resolution=16, shapes=bad)


def test_shapes_option_from_the_command_line_settings():
    _, data = resolve(merge_user(None, ["data.shapes=[square]"], {"objective.name": "vae", "arch.name": "lord", "data.name": "shapes3d-synthetic"}))
    assert data.class_ids.tolist() == [3, 4, 5]


def test_marker_shows_the_front_of_every_identity():
    """The shared front marker: off by default (the draws are unchanged); on, it sits inside every
    object on its +x side and turns with it."""
    plain, marked = Shapes3DSynthetic(resolution=32), Shapes3DSynthetic(resolution=32, marker=True)
    for cls in range(NUM_CLASSES):
        for angle, lo, hi in ((0.0, 16, 16 + 9), (math.pi, 16 - 9, 16)):  # right of the centre; after half a turn, left
            pose = torch.tensor([angle, 0.0, 0.0])
            difference = (marked.render(cls, pose) - plain.render(cls, pose)).abs().sum(0)
            assert difference.sum() > 2.0
            columns = difference.sum(0).nonzero().flatten()
            assert columns.min() >= lo and columns.max() < hi
    assert torch.equal(marked.test_batch(4).y, plain.test_batch(4).y)  # the same draws
    with pytest.raises(ConfigError, match="data.marker"):
        Shapes3DSynthetic(resolution=16, marker="yes")  # type: ignore[arg-type]
    _, data = resolve(merge_user(None, ["data.marker=true"], {"objective.name": "vae", "arch.name": "lord", "data.name": "shapes3d-synthetic"}))
    assert data.marker is True


def test_registered_with_recommended_paper_settings():
    plugins = get_plugins()
    assert "lord" in plugins.architectures.names() and "shapes3d-synthetic" in plugins.datasets.names()
    cfg, data = resolve(merge_user(None, [], {"objective.name": "soft-intro", "arch.name": "lord", "data.name": "shapes3d-synthetic"}))
    assert cfg.objective["beta_neg"] == {"class": 1024.0, "content": 2048.0}
    assert (cfg.objective["beta_rec"], cfg.objective["beta_kl"]) == (0.5, 1.0)
    assert (cfg.arch["class_dim"], cfg.arch["content_dim"], cfg.arch["channels"]) == (256, 128, [64, 128, 256, 256])
    assert data.shape == (3, 64, 64)


# --------------------------------------------------------------------------------------------
# Training and translation
# --------------------------------------------------------------------------------------------


def tiny_run_config(objective="soft-intro", steps=3):
    sets = ["data.resolution=32", f"train.steps={steps}", "train.batch_size=4", "train.log_every=1", "train.checkpoint_every=0"]
    sets += [f"arch.{k}={json.dumps(v)}" for k, v in TINY.items()]
    return resolve(merge_user(None, sets, {"objective.name": objective, "arch.name": "lord", "data.name": "shapes3d-synthetic"}))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from genvae.core.plugins import use_plugins

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:  # built-in plugins only, as the autouse fixture
        mp.setenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "1")
        use_plugins(None)
        torch.set_num_threads(1)
        run_dir = tmp_path_factory.mktemp("lord") / "run"
        cfg, data = tiny_run_config(steps=3)
        result = train(cfg, data, run_dir, progress=False)
        use_plugins(None)
    torch.set_num_threads(threads)
    return run_dir, result


def test_trainer_runs_and_logs_group_kls(tiny_run):
    run_dir, result = tiny_run
    assert result.step == 3
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert {"kl_class", "kl_content", "kl_fake_class", "kl_fake_content"} <= set(records[-1])
    assert all(math.isfinite(v) for v in records[-1].values())
    names = {p.name for p in result.figures}
    assert {"samples.png", "reconstructions.png", "translation.png"} <= names
    run = load_run(run_dir)
    assert run.encoder.latent_groups == {"class": 8, "content": 4}
    assert json.loads((run_dir / "encoder" / "config.json").read_text())["architecture"] == "lord"


def test_translation_grid_layout(tiny_run):
    from genvae.translate import translation_cells, translation_grid, transfer

    run = load_run(tiny_run[0])
    models = run.models
    data = run.data
    classes, contents = data.test_batch(3, seed=1).x, data.test_batch(4, seed=2).x
    grid = translation_grid(models, classes, contents, padding=2)
    size = 32 + 2
    assert grid.shape == (3, 2 + (3 + 1) * size, 2 + (4 + 1) * size)
    tile = lambda r, c: grid[:, 2 + r * size : 2 + r * size + 32, 2 + c * size : 2 + c * size + 32]  # noqa: E731
    assert torch.allclose(tile(0, 0), torch.ones(3, 32, 32))  # blank corner
    assert torch.allclose(tile(0, 2), contents[1], atol=1e-6)  # content images along the top
    assert torch.allclose(tile(2, 0), classes[1], atol=1e-6)  # class images down the left
    cells = translation_cells(models, classes, contents)
    assert torch.allclose(tile(2, 3), cells[1, 2].clamp(0, 1), atol=1e-6)
    # cell (i, j) = D(class of row i, content of column j)
    pair = transfer(models, classes[1:2], contents[2:3])
    assert torch.allclose(cells[1, 2], pair[0], atol=1e-5)
    mu_c, _ = models.encode(classes[1:2])
    mu_t, _ = models.encode(contents[2:3])
    z = torch.cat([mu_c[:, :8], mu_t[:, 8:]], dim=1)
    assert torch.allclose(models.decode(z)[0], cells[1, 2], atol=1e-5)


def test_write_translation_grid_from_files(tiny_run, tmp_path):
    from PIL import Image

    from genvae.translate import write_translation_grid

    data = Shapes3DSynthetic(resolution=64)  # other size: resized to the run's 32x32
    paths = []
    for i, image in enumerate(data.test_batch(3).x):
        path = tmp_path / f"im{i}.png"
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
        paths.append(path)
    out = write_translation_grid(tiny_run[0], paths[:2], paths[1:], tmp_path / "grid.png")
    with Image.open(out) as im:
        width = 5 * (2 + 3 * 34)  # enlarged ×5 to at least 512 px, below a caption saying which is class and which content
        assert im.size == (width, width + caption_height(TRANSLATION_CAPTION, width))
    with pytest.raises(DataError, match="does not exist"):
        write_translation_grid(tiny_run[0], [tmp_path / "missing.png"], paths, tmp_path / "g.png")


def test_content_transfer_error_runs(tiny_run):
    from genvae.translate import content_transfer_error

    run = load_run(tiny_run[0])
    scores = content_transfer_error(run.models, run.data, n_pairs=8, seed=0)
    assert set(scores) >= {"mse", "mse_reconstruction", "mse_copy_content", "mse_copy_class", "mse_mean_image"}
    assert all(0 <= scores[k] <= 1 for k in scores if k.startswith("mse"))
    assert scores == content_transfer_error(run.models, run.data, n_pairs=8, seed=0)


def test_palettes_option_gives_many_identities():
    """``palettes=N``: N seeded colourings per pattern kind, 12·N identities; the same palettes in
    every process; the default (0) keeps the three fixed colourings and their draws."""
    from genvae.plugins.datasets.shapes3d_synthetic import PATTERNS, random_patterns

    assert Shapes3DSynthetic(resolution=16, palettes=0).patterns == PATTERNS
    data = Shapes3DSynthetic(resolution=16, shapes=["square"], marker=True, palettes=10)
    assert data.num_classes == 4 * 3 * 10 and data.class_ids.tolist() == list(range(30, 60))  # square: shape 1
    torch.manual_seed(1)  # the palettes do not depend on torch's global generator
    assert data.patterns == Shapes3DSynthetic(resolution=16, palettes=10).patterns == random_patterns(10)
    assert [kind for _, _, kind in data.patterns] == ["half"] * 10 + ["stripes"] * 10 + ["dot"] * 10
    colours = torch.tensor([[*body, *second] for body, second, _ in data.patterns])
    assert colours.min() >= 0 and colours.max() <= 1 and torch.cdist(colours, colours).add(torch.eye(30)).min() > 0.05  # all differ
    pose = torch.tensor([0.4, 0.05, -0.1])
    images = data.render(data.class_ids, pose.expand(30, 3)).flatten(1)
    assert torch.cdist(images, images).add(torch.eye(30) * 1e3).min() > 0.3  # the identities look different
    _, y, _ = data.draw_with_poses(300, seed=0)
    assert len(set(y.tolist())) > 25 and set(y.tolist()) <= set(range(30, 60))
    circle = data.with_shape_of(torch.tensor([35]), torch.tensor([0]))  # palette 5 of the halves, on a circle
    assert circle.tolist() == [5] and not torch.equal(data.render(circle, pose), data.render(35, pose))
    for bad in (-1, 2.5, True, 1001):
        with pytest.raises(ConfigError, match="data.palettes"):
            Shapes3DSynthetic(resolution=16, palettes=bad)  # type: ignore[arg-type]
    _, resolved = resolve(merge_user(None, ["data.palettes=3"], {"objective.name": "vae", "arch.name": "lord", "data.name": "shapes3d-synthetic"}))
    assert resolved.num_classes == 36


@pytest.mark.parametrize("shape_in", ["class", "content", "frames"])
def test_content_transfer_error_of_exact_models(shape_in):
    """Three exact models of shapes3d-synthetic: one keeps the whole identity in the class code (the
    true split: transfer error 0), one keeps the shape with the pose in the content code
    (``mse_shape_from_content`` 0, transfer error > 0), and one transfers the pose with its own
    convention of which angles of two identities correspond: turned by 90° when the identities
    differ (``mse_aligned`` 0, transfer error > 0)."""
    from genvae.plugins.datasets.shapes3d_synthetic import PATTERNS, SHAPES, class_parts, with_shape_of
    from genvae.translate import content_transfer_error

    data = Shapes3DSynthetic(resolution=16)
    x_a, y_a, p_a = data.draw_with_poses(6, 7)
    x_b, y_b, p_b = data.draw_with_poses(6, 8)
    same = y_a == y_b
    y_b = torch.where(same, (y_b + 1) % NUM_CLASSES, y_b)
    x_b = data.render(y_b, p_b)
    assert bool((class_parts(y_a)[0] != class_parts(y_b)[0]).any())  # some pairs differ in shape
    one_hot = torch.nn.functional.one_hot
    lookup = {}
    for x, y, p in zip(torch.cat([x_a, x_b]), torch.cat([y_a, y_b]), torch.cat([p_a, p_b])):
        shape = one_hot(class_parts(y)[0], len(SHAPES)).float()
        lookup[x.numpy().tobytes()] = torch.cat([one_hot(y, NUM_CLASSES).float(), p, shape, one_hot(y, NUM_CLASSES).float()])
    groups = {"class": NUM_CLASSES, "content": 3 + len(SHAPES) + NUM_CLASSES}

    class Enc(torch.nn.Module):
        latent_groups = groups

        def forward(self, x, y=None):
            mu = torch.stack([lookup[i.numpy().tobytes()] for i in x])
            return mu, torch.zeros_like(mu)

    class Dec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, z, y=None):
            class_id, pose = z[:, :NUM_CLASSES].argmax(1), z[:, NUM_CLASSES : NUM_CLASSES + 3]
            content_shape, content_class = z[:, NUM_CLASSES + 3 : NUM_CLASSES + 3 + len(SHAPES)].argmax(1), z[:, -NUM_CLASSES:].argmax(1)
            if shape_in == "content":
                class_id = with_shape_of(class_id, content_shape * len(PATTERNS))
            if shape_in == "frames":
                pose = pose + torch.outer((class_id != content_class).float(), torch.tensor([math.pi / 2, 0, 0]))
            return data.render(class_id, pose)

    models = Models(Enc(), Dec(), groups, data.dim)
    l1 = lambda a, b: (a - b).abs().flatten(1).mean(1)  # noqa: E731 (any image distance)
    scores = content_transfer_error(models, data, n_pairs=6, seed=7, distances={"l1": l1})
    assert scores["mse_reconstruction"] == pytest.approx(0.0, abs=1e-10)
    assert scores["mse_copy_content"] > 0.01
    assert scores["l1_reconstruction"] == pytest.approx(0.0, abs=1e-10)
    assert scores["l1_copy_content"] == pytest.approx(l1(x_b, data.render(y_a, p_b)).mean().item(), rel=1e-6)
    assert (scores["l1"] < 1e-6) == (scores["mse"] < 1e-8)  # the same verdict as the MSE
    exact, other = {"class": ("mse", "mse_shape_from_content"), "content": ("mse_shape_from_content", "mse"), "frames": ("mse_aligned", "mse")}[shape_in]
    assert scores[exact] == pytest.approx(0.0, abs=1e-8)
    assert scores[other] > 0.001
    assert scores["mse_aligned"] <= scores["mse"] + 1e-12


def test_rotation_fit_tells_where_the_rotation_came_from():
    """Exact translations with B's rotation, A's own rotation, or B's turned by 90°: the fractions
    name the first two, and the aligned error forgives the constant turn of the third."""
    from genvae.translate import rotation_fit

    data = Shapes3DSynthetic(resolution=32, marker=True)  # no rotational symmetry
    _, y_a, pose_a = data.draw_with_poses(64, 1)
    _, y_b, pose_b = data.draw_with_poses(64, 2)
    a_in_b = torch.cat([pose_a[:, :1], pose_b[:, 1:]], dim=1)  # A's rotation at B's position
    from_b = rotation_fit(data, data.render(y_a, pose_b), y_a, pose_a, y_b, pose_b)
    from_a = rotation_fit(data, data.render(y_a, a_in_b), y_a, pose_a, y_b, pose_b)
    turned = rotation_fit(data, data.render(y_a, data.rotate_poses(pose_b, math.pi / 2)), y_a, pose_a, y_b, pose_b)
    assert from_b["rotation_from_content"] == 1.0 and from_b["rotation_from_class"] < 0.25 and from_b["mse_aligned"] < 1e-10
    assert from_a["rotation_from_class"] == 1.0 and from_a["rotation_from_content"] < 0.25 and from_a["mse_aligned"] > 0.005
    assert turned["rotation_from_content"] == 0.0 and turned["rotation_from_class"] < 0.25 and turned["mse_aligned"] < 1e-10
    assert math.isnan(from_b["rotation_follows_content"]) and math.isnan(from_a["rotation_follows_class"])  # too few per identity pair
    # "follows": up to a constant per pair of identities; 64 pairs over up to 132 identity pairs
    # leave about one translation per pair, where it is 1 by construction (NaN above): use one pair
    y_a, y_b = torch.full((64,), 4), torch.full((64,), 7)
    turned = rotation_fit(data, data.render(y_a, data.rotate_poses(pose_b, math.pi / 2)), y_a, pose_a, y_b, pose_b)
    from_a = rotation_fit(data, data.render(y_a, a_in_b), y_a, pose_a, y_b, pose_b)
    assert turned["rotation_follows_content"] == pytest.approx(1.0) and turned["rotation_follows_class"] < 0.3
    assert from_a["rotation_follows_class"] > 0.95 and from_a["rotation_follows_content"] < 0.3


def test_pose_r2_finds_each_factor_in_the_code_that_holds_it():
    """Codes built from the true factors: the content code holds (cos, sin) of the rotation and the
    position, the class code only the identity and noise; a third code holds the rotation alone."""
    from genvae.translate import pose_r2

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (900,), generator=g)
    pose = torch.stack([torch.rand(900, generator=g) * 2 * math.pi, torch.rand(900, generator=g) - 0.5, torch.rand(900, generator=g) - 0.5], 1)
    identity = torch.nn.functional.one_hot(y, 3).float()
    content = torch.cat([pose[:, :1].cos(), pose[:, :1].sin(), pose[:, 1:]], 1) @ torch.randn(4, 4, generator=g)  # any linear mix
    rotation_only = torch.cat([pose[:, :1].cos(), pose[:, :1].sin()], 1)
    codes = torch.cat([identity + 0.1 * torch.randn(900, 3, generator=g), content, rotation_only], 1)
    r2 = pose_r2(codes, {"class": 3, "content": 4, "rotation": 2}, y, pose)
    assert r2["content"]["rotation"] == pytest.approx(1.0) and r2["content"]["position"] == pytest.approx(1.0)
    assert abs(r2["class"]["rotation"]) < 0.1 and abs(r2["class"]["position"]) < 0.1  # held out: no trace, up to noise
    assert r2["rotation"]["rotation"] == pytest.approx(1.0) and abs(r2["rotation"]["position"]) < 0.1


def test_pose_r2_fits_one_map_for_all_identities_when_each_has_few_samples():
    """300 identities, 3 images each: no map per identity can be fitted, so one map for all: a code
    that holds the rotation the same way for every identity scores 1, one that holds it turned by an
    angle of its own per identity scores far lower, noise about 0."""
    from genvae.translate import pose_r2

    g = torch.Generator().manual_seed(1)
    y = torch.arange(300).repeat_interleave(3)
    angle = torch.rand(900, generator=g) * 2 * math.pi
    pose = torch.stack([angle, torch.rand(900, generator=g) - 0.5, torch.rand(900, generator=g) - 0.5], 1)
    own = angle + torch.rand(300, generator=g)[y] * 2 * math.pi  # each identity's own convention
    codes = torch.cat([angle.cos()[:, None], angle.sin()[:, None], own.cos()[:, None], own.sin()[:, None], torch.randn(900, 2, generator=g)], 1)
    r2 = pose_r2(codes, {"shared": 2, "own": 2, "noise": 2}, y, pose)
    assert r2["shared"]["rotation"] == pytest.approx(1.0)
    assert r2["own"]["rotation"] < 0.2 and abs(r2["noise"]["rotation"]) < 0.1 and abs(r2["shared"]["position"]) < 0.1


def test_translation_needs_class_and_content_groups():
    from genvae.plugins.architectures.mlp import MLPDecoder, MLPEncoder
    from genvae.translate import content_transfer_error, translation_grid

    enc, dec = MLPEncoder((3, 16, 16), z_dim=4), MLPDecoder((3, 16, 16), z_dim=4)
    models = Models(enc, dec, dict(enc.latent_groups), 768)
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ConfigError, match="'class' and 'content' latent groups"):
        translation_grid(models, x, x)
    with pytest.raises(ConfigError):
        content_transfer_error(models, Shapes3DSynthetic(resolution=16), n_pairs=2)


# --------------------------------------------------------------------------------------------
# VGG16 perceptual loss
# --------------------------------------------------------------------------------------------


def _random_vgg_file(tmp_path, upto=8, name="vgg16-random.pth"):
    from genvae.plugins.losses.perceptual import vgg16_features

    torch.manual_seed(0)
    features = vgg16_features(upto)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored, as torchvision's classifier
    path = tmp_path / name
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_vgg_perceptual_loss_with_random_weights(tmp_path):
    from genvae.plugins.losses.perceptual import VGGPerceptualLoss

    path, digest = _random_vgg_file(tmp_path)
    loss = VGGPerceptualLoss(path, sha256=digest, layer_ids=[3, 8])
    x = torch.rand(3, 3, 32, 32)
    same = loss(x, x)
    assert same.shape == (3,) and torch.allclose(same, torch.zeros(3))
    x_rec = (x + 0.1 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    value = loss(x, x_rec)
    assert value.shape == (3,) and bool((value > 0).all())
    value.sum().backward()
    assert x_rec.grad is not None and torch.isfinite(x_rec.grad).all()
    assert all(not p.requires_grad for p in loss.parameters())
    # sum scale: × input dims; mean form without it
    mean_form = VGGPerceptualLoss(path, sha256=digest[:8], layer_ids=[3, 8], sum_scale=False)
    assert torch.allclose(value.detach(), mean_form(x, x_rec.detach()) * x[0].numel(), rtol=1e-5)
    grey = torch.rand(2, 1, 16, 16)
    assert loss(grey, grey.flip(-1)).shape == (2,)


def test_vgg_perceptual_loss_refuses_missing_or_wrong_weights(tmp_path):
    from genvae.plugins.losses.perceptual import VGGPerceptualLoss

    with pytest.raises(DataError, match="not found; the perceptual loss never downloads") as info:
        VGGPerceptualLoss(tmp_path / "vgg16-397923af.pth")
    assert "\n" not in str(info.value)
    path, digest = _random_vgg_file(tmp_path)
    with pytest.raises(DataError, match="wrong or corrupt"):
        VGGPerceptualLoss(path, sha256="0" * 64, layer_ids=[3])
    with pytest.raises(ConfigError, match="cannot verify"):
        VGGPerceptualLoss(path, layer_ids=[3])  # no digest and none in the file name
    named, named_digest = _random_vgg_file(tmp_path, name="x.pth")
    renamed = tmp_path / f"vgg16-{named_digest[:8]}.pth"
    named.rename(renamed)
    assert VGGPerceptualLoss(renamed, layer_ids=[3])  # torchvision's name convention verifies it
    with pytest.raises(DataError, match="lack"):
        VGGPerceptualLoss(path, sha256=digest, layer_ids=[3, 8, 13])  # file holds layers 0..8 only


def test_vgg_perceptual_registered_loss_reads_the_environment(tmp_path, monkeypatch):
    from genvae.core.losses import reconstruction_loss
    from genvae.plugins.losses.perceptual import LazyVGGPerceptual

    assert isinstance(reconstruction_loss("vgg-perceptual"), LazyVGGPerceptual)
    monkeypatch.setenv("GENVAE_VGG16_WEIGHTS", str(tmp_path / "none.pth"))
    with pytest.raises(DataError, match="not found"):
        LazyVGGPerceptual()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_bench_translation_writes_its_table_and_reuses_finished_runs(tmp_path, monkeypatch):
    from genvae.bench_translation import run_bench_translation

    monkeypatch.setenv("GENVAE_VGG16_WEIGHTS", str(tmp_path / "no-vgg16-397923af.pth"))  # LPIPS cannot run

    first = run_bench_translation(tmp_path, steps=3, n_pairs=8)
    table = (tmp_path / "translation.md").read_text()
    assert "| Soft-IntroVAE-LORD |" in table and "| VAE-LORD |" in table
    assert (tmp_path / "translation_soft-intro.png").is_file() and (tmp_path / "translation_vae.png").is_file()
    for r in first["models"].values():
        assert set(r["kl"]) == {"class", "content"} and r["resumed_at"] is None
        assert r["mse_copy_content"] > 0 and r["mse"] > 0
        assert set(r["pose_r2"]) == {"class", "content"} and all(math.isfinite(v) for g in r["pose_r2"].values() for v in g.values())
    for objective in ("soft-intro", "vae"):  # recorded in each run, as genvae eval translation records it: genvae info shows it
        record = json.loads((tmp_path / "runs" / objective / "metrics" / "translation.jsonl").read_text().splitlines()[-1])
        assert record["mse"] == first["models"][objective]["mse"]
    again = run_bench_translation(tmp_path, steps=3, n_pairs=8)
    for objective, r in again["models"].items():
        assert r["resumed_at"] == 3 and r["mse"] == first["models"][objective]["mse"]
    assert "(trained by an earlier call)" in (tmp_path / "translation.md").read_text()
    with pytest.raises(ConfigError, match="unknown option objective.beta_nge"):  # before anything is trained
        run_bench_translation(tmp_path / "typo", steps=3, overrides=["objective.beta_nge=1"])
    assert not (tmp_path / "typo" / "runs").exists()
    logged: list[str] = []  # an option of one objective: the other's runs go without, and say so
    run_bench_translation(tmp_path / "gamma", steps=1, n_pairs=8, overrides=["objective.gamma_r=0.01"], log=logged.append)
    assert logged == ["translation bench: vae has no option objective.gamma_r; its runs go without"]
    assert json.loads((tmp_path / "gamma" / "runs" / "soft-intro" / "config.json").read_text())["objective"]["gamma_r"] == 0.01
    # genvae eval translation scores a bench model with the bench's numbers
    from typer.testing import CliRunner

    from genvae.cli import app

    result = CliRunner().invoke(app, ["eval", "translation", str(tmp_path / "runs" / "vae"), "--pairs", "8"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs" / "vae" / "metrics" / "translation.jsonl").read_text().splitlines()[-1])
    assert record["mse"] == first["models"]["vae"]["mse"] and record["kl"] == first["models"]["vae"]["kl"]
    assert record["pose_r2"] == first["models"]["vae"]["pose_r2"]
    assert record["objective"] == "vae" and record["n_pairs"] == 8
    assert (tmp_path / "runs" / "vae" / "metrics" / "translation.png").is_file()
    assert "LPIPS needs torchvision's VGG16 weights" in record["lpips_skipped"]
    # --lpips requires the weights: one line naming the missing file
    result = CliRunner().invoke(app, ["eval", "translation", str(tmp_path / "runs" / "vae"), "--pairs", "8", "--lpips"])
    assert result.exit_code == 2 and "LPIPS needs" in result.output
    if importlib.util.find_spec("lpips") is not None:  # with weights (random trunk): an LPIPS column
        vgg_path, digest = _random_vgg_file(tmp_path, upto=29)
        monkeypatch.setenv("GENVAE_VGG16_WEIGHTS", str(vgg_path))
        monkeypatch.setenv("GENVAE_VGG16_SHA256", digest)
        result = CliRunner().invoke(app, ["eval", "translation", str(tmp_path / "runs" / "vae"), "--pairs", "8"])
        assert result.exit_code == 0, result.output
        record = json.loads((tmp_path / "runs" / "vae" / "metrics" / "translation.jsonl").read_text().splitlines()[-1])
        assert record["lpips"] > 0 and record["lpips_copy_content"] > 0 and "lpips_skipped" not in record
        assert record["mse"] == first["models"]["vae"]["mse"]


# --------------------------------------------------------------------------------------------
# LPIPS (VGG16 trunk) for the translation score
# --------------------------------------------------------------------------------------------


def test_lpips_equals_the_lpips_package_on_random_trunk_weights(tmp_path):
    """Our LPIPS against the lpips package (a test-only dependency) with the same random VGG16
    trunk and the package's own calibrated lin layers: equal to 1e-5."""
    lpips = pytest.importorskip("lpips")
    from genvae.plugins.metrics.lpips_vgg import LPIPS, lin_weights_path

    vgg_path, digest = _random_vgg_file(tmp_path, upto=29)
    ours = LPIPS(vgg_path, lin_weights_path(), vgg_sha256=digest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation, from inside lpips
        reference = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    state = torch.load(vgg_path, weights_only=True)
    for slice_ in (reference.net.slice1, reference.net.slice2, reference.net.slice3, reference.net.slice4, reference.net.slice5):
        for index, module in slice_.named_children():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.data.copy_(state[f"features.{index}.weight"])
                module.bias.data.copy_(state[f"features.{index}.bias"])
    torch.manual_seed(1)
    x, y = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    expected = reference(x, y, normalize=True).flatten()
    assert torch.allclose(ours(x, y), expected, rtol=1e-5, atol=1e-7)
    assert torch.allclose(ours(x, x), torch.zeros(4), atol=1e-7)
    grey = torch.rand(2, 1, 32, 32)
    assert torch.allclose(ours(grey, grey.flip(-1)), reference(grey.expand(-1, 3, -1, -1), grey.flip(-1).expand(-1, 3, -1, -1), normalize=True).flatten(), rtol=1e-5)


def test_lpips_says_which_weights_are_missing(tmp_path, monkeypatch):
    from genvae.plugins.metrics.lpips_vgg import LPIPS, load_lpips, missing_weights

    monkeypatch.setenv("GENVAE_VGG16_WEIGHTS", "")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENVAE_LPIPS_WEIGHTS", str(tmp_path / "nowhere.pth"))
    assert "vgg16-397923af.pth" in missing_weights()  # type: ignore[operator]
    with pytest.raises(DataError, match="LPIPS needs torchvision's VGG16 weights .*nothing is downloaded"):
        load_lpips()
    vgg_path, digest = _random_vgg_file(tmp_path, upto=29)
    with pytest.raises(DataError, match="not found: it is weights/v0.1/vgg.pth inside the lpips package"):
        LPIPS(vgg_path, tmp_path / "nowhere.pth", vgg_sha256=digest)
    wrong = tmp_path / "vgg.pth"
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, wrong)
    with pytest.raises(DataError, match="are not LPIPS v0.1 vgg.pth"):
        LPIPS(vgg_path, wrong, vgg_sha256=digest)


def test_group_kls_are_the_mean_per_image_and_a_group_below_half_a_nat_is_collapsed(monkeypatch):
    """KL per image: class (dim 0) ½μ² = 0.5 and 4.5, mean 2.5; content (dims 1, 2) 0.18 and 0.02,
    mean 0.1 < COLLAPSE_NATS: collapsed."""
    from types import SimpleNamespace

    import genvae.translate
    from genvae.plugins.metrics import translation

    mu = torch.tensor([[1.0, 0.6, 0.0], [3.0, 0.0, 0.2]])

    class Encoder:
        latent_groups = {"class": 1, "content": 2}

        def __call__(self, x):
            return mu, torch.zeros_like(mu)

    run = SimpleNamespace(data=SimpleNamespace(test_batch=lambda n, seed: SimpleNamespace(x=torch.zeros(2, 1))), encoder=Encoder(),
                          models=None, config=SimpleNamespace(objective={"name": "vae"}), path="run", step=3)  # fmt: skip
    kls = translation.group_kls(run)
    assert kls == {"class": pytest.approx(2.5), "content": pytest.approx(0.1)}
    monkeypatch.setattr(genvae.translate, "content_transfer_error", lambda *a, **k: {"mse": 0.0})
    monkeypatch.setattr(genvae.translate, "pose_probe", lambda *a, **k: {})
    result = translation.evaluate_translation(run, figure=False, write=False, lpips=False)
    assert result["collapsed_groups"] == ["content"] and result["kl"] == kls
