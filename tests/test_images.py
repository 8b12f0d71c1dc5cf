"""Images: the residual architecture, the image datasets, their streams and figures."""

from __future__ import annotations

import gzip
import re
import shutil
import warnings
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch

from genvae.core.checkpoint import export_component
from genvae.core.interfaces import Batch, Models
from genvae.core.plugins import get_plugins
from genvae.core.run import load_component
from genvae.errors import ConfigError, DataError
from genvae.plugins.architectures.residual import ResidualDecoder, ResidualEncoder
from genvae.plugins.datasets.image_folder import ImageFolder
from genvae.plugins.datasets.images import CIFAR10, SVHN, Digits, FashionMNIST, MNIST, read_idx
from genvae.plugins.objectives.soft_intro import SoftIntroConfig, SoftIntroVAE
from genvae.viz.images import CONDITIONAL_SAMPLES_CAPTION, RECONSTRUCTIONS_CAPTION, SAMPLES_CAPTION, caption_height, display_scale, interpolation_grid

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a busy 2-core machine OpenMP's
    barriers make 2 threads many times slower than 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


# --------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------


def _res_params(cin: int, cout: int) -> int:
    shortcut = cin * cout if cin != cout else 0
    return shortcut + 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout  # convs (no bias) + 2 BN


def expected_params(shape: tuple[int, int, int], channels: list[int], z_dim: int, num_classes: int = 0) -> tuple[int, int]:
    """Parameter counts written out from the paper's Table 6 / the authors' layer list."""
    c, size = shape[0], shape[1]
    levels = len(channels)
    base = -(-size // 2**levels)
    enc = 25 * c * channels[0] + 2 * channels[0]
    enc += sum(_res_params(a, b) for a, b in zip(channels, channels[1:])) + _res_params(channels[-1], channels[-1])
    enc += (channels[-1] * base * base + num_classes + 1) * 2 * z_dim
    dec = (z_dim + num_classes + 1) * channels[-1] * base * base
    widths = [channels[-1], *reversed(channels)]
    dec += sum(_res_params(a, b) for a, b in zip(widths, widths[1:])) + _res_params(channels[0], channels[0])
    dec += 25 * channels[0] * c + c
    return enc, dec


@pytest.mark.parametrize(
    "shape, channels",
    [
        ((3, 32, 32), [64, 128, 256]),  # CIFAR-10 (Appendix 9.2.2): 4x4 base
        ((1, 28, 28), [64, 128]),  # (Fashion-)MNIST as the authors' code: 7x7 base
        ((1, 28, 28), [8, 16, 32]),  # 28 not divisible by 8: padded to 32, cropped back
        ((1, 16, 16), [8, 16]),
        ((3, 64, 64), [8, 16, 16, 32]),
    ],
)
def test_residual_shapes_and_parameter_counts(shape, channels) -> None:
    z_dim = 12
    encoder = ResidualEncoder(shape, z_dim=z_dim, channels=channels)
    decoder = ResidualDecoder(shape, z_dim=z_dim, channels=channels)
    x = torch.rand(2, *shape)
    mu, logvar = encoder(x)
    assert mu.shape == logvar.shape == (2, z_dim)
    assert decoder(mu).shape == (2, *shape)
    enc_n, dec_n = expected_params(shape, channels, z_dim)
    assert sum(p.numel() for p in encoder.parameters()) == enc_n
    assert sum(p.numel() for p in decoder.parameters()) == dec_n
    assert encoder.latent_groups == {"z": z_dim}
    assert encoder.config == {"data_shape": list(shape), "num_classes": 0, "z_dim": z_dim, "channels": channels, "norm": "batch", "block": "soft-intro"}


def test_norm_options() -> None:
    shape, channels = (1, 16, 16), [8, 16]
    x = torch.rand(6, *shape)
    # batch-stats: eval mode normalises exactly as training does
    encoder = ResidualEncoder(shape, z_dim=4, channels=channels, norm="batch-stats")
    assert torch.equal(encoder.train()(x)[0], encoder.eval()(x)[0])
    assert not any("running" in k for k in encoder.state_dict())
    # batch (the authors' BatchNorm, the default): running statistics in eval mode
    encoder = ResidualEncoder(shape, z_dim=4, channels=channels)
    assert any("running_mean" in k for k in encoder.state_dict())
    assert not torch.allclose(encoder.train()(x)[0], encoder.eval()(x)[0])
    # none: no normalisation, biased convolutions, one output per input independent of the batch
    encoder = ResidualEncoder(shape, z_dim=4, channels=channels, norm="none").eval()
    assert torch.allclose(encoder(x)[0][:1], encoder(x[:1])[0], atol=1e-6)
    with pytest.raises(ConfigError, match="arch.norm"):
        ResidualDecoder(shape, channels=channels, norm="group")


@pytest.mark.parametrize("block", ["soft-intro", "introvae"])
def test_residual_block_by_hand(block: str) -> None:
    """soft-intro (the authors' Soft-IntroVAE code): LReLU(BN(conv2(h)) + shortcut(x));
    introvae (IntroVAE's code): LReLU(BN(conv2(h) + shortcut(x))); h = LReLU(BN(conv1(x)))."""
    from torch.nn import functional as F

    from genvae.plugins.architectures.residual import ResidualBlock

    torch.manual_seed(0)
    unit = ResidualBlock(3, 5, block=block).train()
    x = torch.randn(4, 3, 6, 6)

    def bn(t):  # training-mode BatchNorm2d at its initial affine (1, 0)
        mean, var = t.mean((0, 2, 3), keepdim=True), t.var((0, 2, 3), unbiased=False, keepdim=True)
        return (t - mean) / torch.sqrt(var + 1e-5)

    h = F.leaky_relu(bn(F.conv2d(x, unit.conv1.weight, padding=1)), 0.2)
    branch, shortcut = F.conv2d(h, unit.conv2.weight, padding=1), F.conv2d(x, unit.shortcut.weight)
    expected = F.leaky_relu(bn(branch) + shortcut if block == "soft-intro" else bn(branch + shortcut), 0.2)
    assert torch.allclose(unit(x), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="arch.block must be one of soft-intro, introvae, got 'x'"):
        ResidualEncoder((1, 16, 16), channels=[8], block="x")


def test_networks_saved_before_the_block_option_are_rebuilt_with_introvaes_block(tmp_path: Path) -> None:
    """An export or run config without ``block`` was trained with IntroVAE's block (genvae's only
    one then); loading it must not switch it to today's default."""
    import json

    from genvae.core.run import read_run_config
    from genvae.run_info import run_info

    shape = (1, 16, 16)
    old = ResidualDecoder(shape, z_dim=4, channels=[8, 16], block="introvae").eval()
    export_component(old, tmp_path / "decoder", "decoder", "residual")
    meta_path = tmp_path / "decoder" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["block"]
    meta_path.write_text(json.dumps(meta))
    reloaded = load_component(tmp_path / "decoder")
    z = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(reloaded(z), old(z))
    run = {"train": {"steps": 10}, "optim": {}, "objective": {"name": "vae"}, "data": {"name": "digits"},
           "arch": {"name": "residual", "z_dim": 4, "channels": [8, 16], "norm": "batch"}}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert read_run_config(tmp_path / "run.json").arch["block"] == "introvae"
    (tmp_path / "old-run").mkdir()
    (tmp_path / "old-run" / "config.json").write_text(json.dumps(run))
    assert run_info(tmp_path / "old-run")["arch"]["block"] == "introvae"  # what genvae info shows
    run["arch"]["block"] = "soft-intro"
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert read_run_config(tmp_path / "run.json").arch["block"] == "soft-intro"


def test_cifar10_architecture_size_matches_authors() -> None:
    """(64, 128, 256), z 128 at 32x32: the encoder ends at 256x4x4, as Table 6 scaled down."""
    encoder = ResidualEncoder((3, 32, 32), z_dim=128, channels=(64, 128, 256))
    assert encoder.fc.in_features == 256 * 4 * 4
    assert sum(p.numel() for p in encoder.parameters()) == expected_params((3, 32, 32), [64, 128, 256], 128)[0]


def test_residual_rejects_bad_geometry() -> None:
    with pytest.raises(ConfigError, match="too small"):
        ResidualEncoder((1, 8, 8), channels=[8, 16, 32, 64])
    with pytest.raises(ConfigError, match="square"):
        ResidualDecoder((1, 16, 32), channels=[8])
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        ResidualEncoder((2,), channels=[8])


def test_residual_names_the_smallest_image_it_takes() -> None:
    with pytest.raises(ConfigError, match=r"images of side 1 are too small for the residual architecture: it halves the side at least once, so it needs a side of at least 2"):
        ResidualEncoder((3, 1, 1), channels=[8])  # folder data.resolution=1: was "use at most 1 channel entries"
    with pytest.raises(ConfigError, match=r"so 2 entries need a side of at least 4; use at most 1 channel entry, or larger images"):
        ResidualDecoder((3, 2, 2), channels=[8, 16])


def test_conditional_forward_uses_labels() -> None:
    shape = (1, 16, 16)
    encoder = ResidualEncoder(shape, num_classes=10, z_dim=4, channels=[8, 16]).eval()
    decoder = ResidualDecoder(shape, num_classes=10, z_dim=4, channels=[8, 16]).eval()
    x = torch.rand(3, *shape)
    y0, y1 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    mu0, _ = encoder(x, y0)
    mu1, _ = encoder(x, y1)
    assert mu0.shape == (3, 4) and not torch.allclose(mu0, mu1)
    assert decoder(mu0, y0).shape == (3, *shape)
    assert not torch.allclose(decoder(mu0, y0), decoder(mu0, y1))
    with pytest.raises(DataError, match="class-conditional: pass each sample.s class label y"):
        encoder(x)


def test_registered_as_plugins() -> None:
    plugins = get_plugins()
    assert plugins.architectures.get("residual").encoder is ResidualEncoder
    for name in ("mnist", "fashion-mnist", "cifar10", "svhn", "folder", "digits"):
        plugins.datasets.get(name)


@pytest.mark.parametrize("norm", ["batch-stats", "batch"])
def test_export_and_reload_give_identical_outputs(tmp_path: Path, norm: str) -> None:
    shape = (1, 28, 28)
    encoder = ResidualEncoder(shape, num_classes=10, z_dim=6, channels=[8, 16, 16], norm=norm)
    decoder = ResidualDecoder(shape, num_classes=10, z_dim=6, channels=[8, 16, 16], norm=norm)
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        encoder(torch.rand(8, *shape), torch.arange(8))
        decoder(torch.randn(8, 6), torch.arange(8))
    encoder.eval(), decoder.eval()
    export_component(encoder, tmp_path / "encoder", "encoder", "residual")
    export_component(decoder, tmp_path / "decoder", "decoder", "residual")
    encoder2, decoder2 = load_component(tmp_path / "encoder"), load_component(tmp_path / "decoder")
    x, y = torch.rand(4, *shape), torch.tensor([0, 3, 5, 9])
    with torch.no_grad():
        assert torch.equal(encoder(x, y)[0], encoder2(x, y)[0])
        assert torch.equal(encoder(x, y)[1], encoder2(x, y)[1])
        z = torch.randn(4, 6)
        assert torch.equal(decoder(z, y), decoder2(z, y))


# --------------------------------------------------------------------------------------------
# Datasets and streams
# --------------------------------------------------------------------------------------------


def test_digits_shapes_labels_range(digits: Digits) -> None:
    assert digits.kind == "images" and digits.shape == (1, 16, 16) and digits.num_classes == 10
    batch = next(iter(digits.train_stream(50, seed=0)))
    assert batch.x.shape == (50, 1, 16, 16) and batch.x.dtype == torch.float32
    assert 0.0 <= float(batch.x.min()) and float(batch.x.max()) <= 1.0 and float(batch.x.max()) > 0.9
    assert batch.y.dtype == torch.int64 and set(batch.y.tolist()) <= set(range(10))
    assert digits.split_size("train") + digits.split_size("test") == 1797
    test = digits.test_batch(20, seed=3)
    assert test.x.shape == (20, 1, 16, 16) and torch.equal(test.x, digits.test_batch(20, seed=3).x)
    train_images, test_images = digits.split_data("train")[0], digits.split_data("test")[0]
    assert train_images.dtype == torch.uint8 and not (train_images[:, None] == test_images[None]).flatten(2).all(-1).any()
    for key in ("train", "arch", "vae", "soft-intro"):
        assert key in digits.recommended


def _take(stream, n: int) -> list[Batch]:
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_stream_is_deterministic_and_covers_each_epoch(digits: Digits) -> None:
    size = digits.split_size("train")  # 1500
    a = _take(digits.train_stream(100, seed=7), 16)
    b = _take(digits.train_stream(100, seed=7), 16)
    assert all(torch.equal(p.x, q.x) and torch.equal(p.y, q.y) for p, q in zip(a, b))
    c = _take(digits.train_stream(100, seed=8), 1)
    assert not torch.equal(a[0].x, c[0].x)
    # one epoch = 15 batches of 100: every image once; the next epoch is reshuffled
    epoch = torch.cat([batch.x for batch in a[:15]]).flatten(1)
    assert epoch.shape[0] == size and torch.unique(epoch, dim=0).shape[0] == torch.unique(digits.split_data("train")[0].flatten(1), dim=0).shape[0]
    assert not torch.equal(a[15].x, a[0].x)


def test_stream_resumes_exactly_mid_epoch(digits: Digits) -> None:
    reference = _take(digits.train_stream(64, seed=1), 40)  # crosses an epoch boundary (1500/64)
    stream = digits.train_stream(64, seed=1)
    it = iter(stream)
    for _ in range(11):
        next(it)
    state = stream.state_dict()
    assert state["epoch"] == 0 and state["position"] == 11 * 64
    resumed = digits.train_stream(64, seed=1)
    resumed.load_state_dict(dict(state))
    rest = _take(resumed, 29)
    assert all(torch.equal(p.x, q.x) and torch.equal(p.y, q.y) for p, q in zip(reference[11:], rest))
    assert resumed.state_dict()["epoch"] == 1


def test_rank_shards_are_disjoint(digits: Digits) -> None:
    world = 3
    orders, seen = [], []
    for rank in range(world):
        stream = digits.train_stream(500, seed=5, rank=rank, world_size=world)
        assert stream.shard_size == 500  # 1500 / 3: one batch is this rank's whole epoch
        orders.append(stream._epoch_order(0)[0])
        seen.append((next(iter(stream)).x * 255).round().long().flatten(1))
    together = torch.cat(orders)
    assert len(torch.unique(together)) == digits.split_size("train") == len(together)  # disjoint, complete
    images = digits.split_data("train")[0].flatten(1).long()
    assert torch.equal(torch.cat(seen).sum(0), images.sum(0))  # every image exactly once (exact integer sums)
    assert torch.equal(seen[1], images[orders[1]])


def _write_pngs(folder: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        size = (40 + 4 * i, 30 + 2 * i)
        mode = "L" if i % 2 else "RGB"
        array = rng.integers(0, 256, (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), dtype=np.uint8)
        Image.fromarray(array, mode=mode).save(folder / f"img_{i}.png")


def test_folder_dataset_skips_corrupt_files(tmp_path: Path) -> None:
    _write_pngs(tmp_path, 5)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    data = ImageFolder(str(tmp_path), resolution=16, hflip=True)
    assert data.shape == (3, 16, 16) and data.num_classes == 0 and data.kind == "images"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = _take(data.train_stream(4, seed=0), 6)  # batch larger than what remains: spans epochs
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 1 and "1 unreadable" in messages[0] and "broken.png" in messages[0]
    assert data.split_size("train") == 5
    assert all(b.x.shape == (4, 3, 16, 16) and b.y is None and 0 <= b.x.min() and b.x.max() <= 1 for b in batches)
    assert data.test_batch(3).x.shape == (3, 3, 16, 16)


@pytest.mark.parametrize("kind", ["png", "tiff-big-endian", "mode-I"])
def test_16_bit_greyscale_images_are_scaled_to_8_bits(tmp_path: Path, kind: str) -> None:
    """Pillow's own conversion clips 16-bit values at 255 (an all-white image); genvae reads
    round(v / 257), in the folder dataset and for files given to commands alike."""
    from PIL import Image

    from genvae.viz.images import load_images

    values = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    if kind == "png":
        image, name = Image.fromarray(values), "a16.png"  # opens as I;16
    elif kind == "tiff-big-endian":
        image, name = Image.frombytes("I;16B", (16, 16), values.astype(">u2").tobytes()), "a16.tif"
    else:
        image, name = Image.fromarray(values.astype(np.int32)), "a32.tif"  # mode I, as older Pillow opens 16-bit PNGs
    image.save(tmp_path / name)
    expected = np.rint(values / 257).astype(np.uint8)
    images = ImageFolder(str(tmp_path), resolution=16).split_data("train")[0]
    assert np.array_equal(images[0].numpy(), np.stack([expected] * 3))
    x = load_images([tmp_path / name], (1, 16, 16))
    assert np.array_equal((x[0, 0] * 255).round().byte().numpy(), expected)


def test_float_images_in_0_1_are_scaled_and_others_refused(tmp_path: Path) -> None:
    from PIL import Image

    from genvae.plugins.datasets.image_folder import read_image

    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "unit.tif")
    assert np.array_equal(read_image(tmp_path / "unit.tif", "L", (16, 16)), np.rint(values.astype(np.float64) * 255).astype(np.uint8))
    Image.fromarray(values * 3 - 1).save(tmp_path / "wide.tif")
    refused = r"wide.tif: a floating-point image with values in \[-1, 2\]; .* save it as an 8- or 16-bit image"
    with pytest.raises(DataError, match=refused):
        read_image(tmp_path / "wide.tif", "L", (16, 16))
    with warnings.catch_warnings(record=True) as caught:  # the folder skips it, saying why
        warnings.simplefilter("always")
        assert ImageFolder(str(tmp_path), resolution=16).split_size("train") == 1
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and re.search(refused, messages[0]) and "skipped 1 unreadable image file(s) of 2" in messages[1]


def test_folder_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing does not exist; set data.path"):
        ImageFolder(str(tmp_path / "missing"))
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="a.png is not a directory; set data.path"):
        ImageFolder(str(tmp_path / "a.png"))
    (tmp_path / "a.png").unlink()
    with pytest.raises(DataError, match="no image files"):
        ImageFolder(str(tmp_path))
    with pytest.raises(ConfigError, match="data.path"):
        ImageFolder()


def test_a_directory_as_data_name_is_the_folder_dataset(tmp_path: Path) -> None:
    from genvae.core.run import resolve

    (tmp_path / "faces").mkdir()
    _write_pngs(tmp_path / "faces", 3)
    cfg, data = resolve({"data": {"name": str(tmp_path / "faces"), "resolution": 16}})
    assert cfg.data["name"] == "folder" and cfg.data["path"] == str(tmp_path / "faces") and data.shape == (3, 16, 16)
    assert cfg.arch["name"] == "residual"  # the folder dataset's recommendation
    with pytest.raises(ConfigError, match=r"no file or directory '\./nowhere' \(and no dataset of that name\).*8gaussians"):
        resolve({"data": {"name": "./nowhere"}})
    with pytest.raises(ConfigError, match=r"'.*img_0.png' is a file; --data takes a folder of images \(its parent folder\?\), a file of rows \(\.npy.*\) or a dataset name: .*8gaussians"):
        resolve({"data": {"name": str(tmp_path / "faces" / "img_0.png")}})
    (tmp_path / "other").mkdir()
    with pytest.raises(ConfigError, match=r"--data .*faces and data.path=.*other name two different folders; give one of them"):
        resolve({"data": {"name": str(tmp_path / "faces"), "path": str(tmp_path / "other")}})
    cfg, _ = resolve({"data": {"name": str(tmp_path / "faces"), "path": str(tmp_path / "faces")}})  # the same folder twice: fine
    assert cfg.data["path"] == str(tmp_path / "faces")
    cfg, data = resolve({"data": {"name": f"folder:path={tmp_path / 'faces'},resolution=8"}})  # the form eval's --in takes
    assert cfg.data["name"] == "folder" and cfg.data["path"] == str(tmp_path / "faces") and data.shape == (3, 8, 8)
    shutil.copytree(tmp_path / "faces", tmp_path / "set a,b")  # a comma in a path: the piece without "=" belongs to it
    cfg, data = resolve({"data": {"name": f"folder:path={tmp_path / 'set a,b'},resolution=8,"}})
    assert cfg.data["path"] == str(tmp_path / "set a,b") and data.shape == (3, 8, 8)


def test_a_folder_named_like_a_dataset_is_pointed_out(tmp_path: Path, monkeypatch) -> None:
    """``--data digits`` with a folder ./digits here trains on the built-in dataset, saying so."""
    from genvae.api import user_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    with pytest.warns(UserWarning, match=r"--data=digits is the dataset 'digits', not the folder ./digits here; .* give --data=./digits"):
        user_settings(None, [], {"data.name": "digits"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        user_settings(None, [], {"data.name": "mnist"})  # no such folder here: no warning


def test_missing_files_raise_one_line_data_errors(tmp_path: Path) -> None:
    cases = [
        (lambda: MNIST(root=str(tmp_path)), "train-images-idx3-ubyte"),
        (lambda: FashionMNIST(root=str(tmp_path)), "apt-get install dataset-fashion-mnist"),
        (lambda: CIFAR10(root=str(tmp_path)), "cifar-10-batches-py"),
        (lambda: SVHN(root=str(tmp_path)), "train_32x32.mat"),
    ]
    for build, text in cases:
        with pytest.raises(DataError) as info:
            build()
        message = str(info.value)
        assert text in message and str(tmp_path) in message and "\n" not in message
    with pytest.raises(DataError, match="/usr/share/datasets/fashion-mnist"):
        FashionMNIST(root=str(tmp_path))
    with pytest.raises(ConfigError, match="split"):
        MNIST(root=str(tmp_path), split="valid")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_and_test_split_fallback(tmp_path: Path) -> None:
    images = np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 4, 1, 5]))
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    with pytest.raises(DataError, match="data.split=test"):
        MNIST(root=str(tmp_path))
    data = MNIST(root=str(tmp_path), split="test")  # only the test split: usable as OOD data
    batch = next(iter(data.train_stream(5, seed=0)))
    assert batch.x.shape == (5, 1, 28, 28) and sorted(batch.y.tolist()) == [1, 1, 3, 4, 5]
    assert torch.equal(data.get(torch.arange(5), "test").x, torch.from_numpy(images).float().div(255).unsqueeze(1))
    small = MNIST(root=str(tmp_path), split="test", resolution=16)  # resized, e.g. as OOD data for a 16x16 run
    x = small.get(torch.arange(5), "test").x
    expected = torch.nn.functional.interpolate(torch.from_numpy(images).float().unsqueeze(1), size=(16, 16), mode="bilinear", antialias=True)
    assert small.shape == (1, 16, 16) and x.shape == (5, 1, 16, 16)
    torch.testing.assert_close(x * 255, expected.round().clamp(0, 255), atol=0, rtol=0)
    with pytest.raises(ConfigError, match="data.resolution must be positive"):
        MNIST(root=str(tmp_path), split="test", resolution=0)


# --------------------------------------------------------------------------------------------
# Training and figures
# --------------------------------------------------------------------------------------------


def _digits_models(digits: Digits, num_classes: int = 0) -> Models:
    torch.manual_seed(0)
    encoder = ResidualEncoder(digits.shape, num_classes=num_classes, z_dim=8, channels=[8, 16])
    decoder = ResidualDecoder(digits.shape, num_classes=num_classes, z_dim=8, channels=[8, 16])
    return Models(encoder, decoder, dict(encoder.latent_groups), digits.dim, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("conditional", [False, True])
def test_soft_intro_steps_on_digits(digits: Digits, conditional: bool) -> None:
    models = _digits_models(digits, num_classes=10 if conditional else 0)
    parts = {"encoder": models.encoder, "decoder": models.decoder}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in parts.items()}
    objective = SoftIntroVAE(SoftIntroConfig(beta_rec=1.0, beta_kl=1.0, beta_neg=64.0, num_vae=1))
    stream = iter(digits.train_stream(32, seed=0))
    seen_phases = set()
    for step in range(4):
        batch = next(stream)
        if not conditional:
            batch = Batch(batch.x)
        ctx = objective.begin_step(batch, models, step)
        for phase in objective.phases_at(step):
            seen_phases.add(phase.name)
            for name, module in parts.items():
                module.requires_grad_(name in phase.trains)
            out = objective.phase_loss(phase, ctx, models)
            assert torch.isfinite(out.loss), (step, phase.name)
            assert all(torch.isfinite(v) for v in out.logs.values())
            for name in phase.trains:
                optimizers[name].zero_grad(set_to_none=True)
            out.loss.backward()
            for name in phase.trains:
                optimizers[name].step()
    assert seen_phases == {"vae", "encoder", "decoder"}


@pytest.mark.parametrize("conditional", [False, True])
def test_write_figures(digits: Digits, tmp_path: Path, conditional: bool) -> None:
    from PIL import Image

    models = _digits_models(digits, num_classes=10 if conditional else 0)
    models.encoder.eval(), models.decoder.eval()
    state = torch.random.get_rng_state()
    with torch.no_grad():
        paths = digits.write_figures(models, tmp_path, seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert sorted(p.name for p in paths) == ["reconstructions.png", "samples.png"]
    rows = 10 if conditional else 8  # one row per class when conditional
    scale = display_scale(rows * 18 + 2, 8 * 18 + 2)  # small grids are enlarged by a whole factor
    assert scale == (3 if conditional else 4)  # 182 or 146 px -> 546 or 584
    caption = CONDITIONAL_SAMPLES_CAPTION if conditional else SAMPLES_CAPTION  # a strip of text above each grid
    with Image.open(tmp_path / "samples.png") as im:
        assert im.size == (scale * (8 * 18 + 2), scale * (rows * 18 + 2) + caption_height(caption, im.size[0]))
        assert np.asarray(im.convert("L").crop((0, 0, im.size[0], caption_height(caption, im.size[0])))).min() < 100  # text drawn
    with Image.open(tmp_path / "reconstructions.png") as im:
        # 4 real rows interleaved with 4 reconstructions
        assert im.size == (4 * (8 * 18 + 2), 4 * (8 * 18 + 2) + caption_height(RECONSTRUCTIONS_CAPTION, im.size[0]))
    first = (tmp_path / "samples.png").read_bytes()
    with torch.no_grad():
        digits.write_figures(models, tmp_path, seed=0)
    assert (tmp_path / "samples.png").read_bytes() == first


def test_interpolation_grid_shape(digits: Digits) -> None:
    models = _digits_models(digits)
    models.encoder.eval(), models.decoder.eval()
    corners = digits.test_batch(4).x
    grid = interpolation_grid(models, corners, steps=8)
    assert grid.shape == (3, 8 * 18 + 2, 8 * 18 + 2)  # 8x8 cells of 16 px + 2 px padding; grey drawn as RGB
    assert 0 <= float(grid.min()) and float(grid.max()) <= 1
    with pytest.raises(ValueError, match="4 corner"):
        interpolation_grid(models, corners[:3])


# --------------------------------------------------------------------------------------------
# Real data (../shared/data): skipped when absent
# --------------------------------------------------------------------------------------------


def _shared(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (real data lives beside the project only on developer machines)")
    return folder


@pytest.mark.realdata
def test_real_fashion_mnist() -> None:
    data = FashionMNIST(root=str(_shared("fashion-mnist")))
    assert data.split_size("train") == 60_000 and data.split_size("test") == 10_000
    batch = next(iter(data.train_stream(128, seed=0)))
    assert batch.x.shape == (128, 1, 28, 28) and 0 <= batch.x.min() and batch.x.max() <= 1
    assert data.recommended["arch"] == {"name": "residual", "z_dim": 32, "channels": [64, 128]}
    assert data.recommended["soft-intro"]["beta_neg"] == 256.0


@pytest.mark.realdata
def test_real_mnist_test_split() -> None:
    root = _shared("mnist")
    with pytest.raises(DataError, match="data.split=test"):
        MNIST(root=str(root))
    data = MNIST(root=str(root), split="test")
    assert data.split_size("train") == 10_000 and data.test_batch(16).y.shape == (16,)


@pytest.mark.realdata
def test_real_cifar10_partial_npz() -> None:
    data = CIFAR10(root=str(_shared("cifar10-partial")))
    assert data.split_size("train") == 5 * 761 and data.split_size("test") == 761
    batch = data.test_batch(8)
    assert batch.x.shape == (8, 3, 32, 32) and batch.y.max() < 10


@pytest.mark.realdata
def test_real_folder_of_faces() -> None:
    data = ImageFolder(str(_shared("celeba-32")), resolution=32)
    assert data.split_size("train") == 32
    assert next(iter(data.train_stream(8, seed=0))).x.shape == (8, 3, 32, 32)


def test_batchnorm_statistics_are_recomputed_from_real_data():
    from genvae.core.batchnorm import recalibrate_batchnorm
    from genvae.core.config import merge_user
    from genvae.core.run import build_models, models_view, resolve

    cfg, data = resolve(merge_user(None, ["arch.channels=[8,16]", "arch.z_dim=4"], {"arch.name": "residual", "data.name": "digits"}))
    encoder, decoder = build_models(cfg, data)
    bn = encoder.features[1]
    bn.running_mean.fill_(5.0)  # as if dominated by something else than the data
    encoder.eval()
    assert recalibrate_batchnorm(models_view(encoder, decoder, data), data, batch_size=16, batches=1, seed=0) > 0
    x = next(iter(data.train_stream(16, seed=424_242))).x
    with torch.no_grad():
        expected = encoder.features[0](x).mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    assert bn.momentum == 0.1 and not encoder.training  # restored


def test_a_camera_photo_is_read_the_way_up_its_exif_orientation_says(tmp_path: Path) -> None:
    """Orientation 6 (the stored pixels must turn 90° clockwise, as phones save portraits): the
    left half of the stored pixels is the top of the picture."""
    from PIL import Image

    from genvae.plugins.datasets.image_folder import read_image

    stored = np.zeros((20, 40), np.uint8)
    stored[:, :20] = 255  # left half white
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "portrait.jpg", exif=exif.tobytes(), quality=95)
    pixels = read_image(tmp_path / "portrait.jpg", "L", (20, 40))  # (width, height): as shown, 20 wide and 40 tall
    assert pixels.shape == (40, 20) and pixels[:16].mean() > 200 and pixels[-16:].mean() < 50


def test_a_folder_smaller_than_a_batch_is_pointed_out(tmp_path: Path) -> None:
    import genvae

    (tmp_path / "three").mkdir()
    _write_pngs(tmp_path / "three", 3)
    settings = {"data.resolution": 8, "arch.channels": [4], "train.figures_every": 0}
    with pytest.warns(UserWarning, match=r"folder: 3 training image\(s\) per process, fewer than a batch \(8\): every batch repeats images"):
        genvae.train(tmp_path / "a", objective="vae", data=str(tmp_path / "three"), steps=1, batch_size=8, settings=settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        genvae.train(tmp_path / "b", objective="vae", data=str(tmp_path / "three"), steps=1, batch_size=3, settings=settings)


def test_a_greyscale_folder_trains_on_one_channel(tmp_path: Path) -> None:
    import genvae
    from genvae.plugins.datasets.image_folder import read_image
    from genvae.plugins.metrics.ood import open_eval_data

    (tmp_path / "grey").mkdir()
    _write_pngs(tmp_path / "grey", 4)  # RGB and L files mixed: both read as greyscale
    data = ImageFolder(str(tmp_path / "grey"), resolution=8, channels=1)
    x = data.test_batch(4).x
    assert data.shape == (1, 8, 8) and x.shape == (4, 1, 8, 8)
    for i in range(4):  # file i, RGB or L, is image i, its greyscale pixels resized
        expected = torch.tensor(read_image(tmp_path / "grey" / f"img_{i}.png", "L", (8, 8)), dtype=torch.float32) / 255
        assert torch.equal(data.get(torch.tensor([i])).x[0, 0], expected)
    with pytest.raises(ConfigError, match=r"data.channels must be 1 \(greyscale\) or 3 \(RGB\), got 2"):
        ImageFolder(str(tmp_path / "grey"), channels=2)
    settings = {"data.resolution": 8, "data.channels": 1, "arch.channels": [4], "train.figures_every": 0}
    genvae.train(tmp_path / "run", objective="vae", data=str(tmp_path / "grey"), steps=1, batch_size=4, settings=settings)
    run = genvae.load_run(tmp_path / "run")
    assert tuple(run.data.shape) == (1, 8, 8)
    source, _ = open_eval_data(str(tmp_path / "grey"), run.data, "test")  # eval --in DIR: opened at the run's size and channels
    assert tuple(source.shape) == (1, 8, 8)


def test_subfolders_as_classes(tmp_path: Path) -> None:
    import genvae

    for name in ("cats", "dogs", "birds"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        _write_pngs(tmp_path / "pets" / name, 2)
    data = ImageFolder(str(tmp_path / "pets"), resolution=8, labels=True)
    assert data.class_names == ["birds", "cats", "dogs"] and data.num_classes == 3
    batch = data.get(torch.arange(6))
    assert batch.y.tolist() == [0, 0, 1, 1, 2, 2]  # files sorted: birds/, cats/, dogs/
    assert ImageFolder(str(tmp_path / "pets"), resolution=8).num_classes == 0  # labels only when asked
    with patch("genvae.plugins.datasets.image_folder.PRELOAD_LIMIT_BYTES", 0):  # decoded per batch: the same labels
        assert ImageFolder(str(tmp_path / "pets"), resolution=8, labels=True).get(torch.tensor([5, 2])).y.tolist() == [2, 1]
    _write_pngs(tmp_path / "pets", 1)
    with pytest.raises(DataError, match=r"1 image\(s\) lie in it directly \(img_0.png, ...\); move them into class subfolders"):
        ImageFolder(str(tmp_path / "pets"), labels=True)
    (tmp_path / "one" / "only").mkdir(parents=True)
    _write_pngs(tmp_path / "one" / "only", 2)
    with pytest.raises(DataError, match=r"needs at least 2 class subfolders .* found \['only'\]"):
        ImageFolder(str(tmp_path / "one"), labels=True)
    (tmp_path / "pets" / "img_0.png").unlink()
    with pytest.raises(ConfigError, match=r"has no labels; a folder's subfolders are its classes with settings={'data.labels': True}"):
        genvae.train(tmp_path / "unlabelled", objective="vae", data=str(tmp_path / "pets"), steps=1, batch_size=6,
                     settings={"data.resolution": 8, "train.conditional": True, "arch.channels": [4]})
    settings = {"data.resolution": 8, "data.labels": True, "train.conditional": True, "arch.channels": [4], "train.figures_every": 0}
    genvae.train(tmp_path / "run", objective="vae", data=str(tmp_path / "pets"), steps=1, batch_size=6, settings=settings)
    assert genvae.load_run(tmp_path / "run").encoder.config["num_classes"] == 3  # a class-conditional model


def test_images_smaller_than_the_resolution_are_pointed_out_when_training_is_set_up(tmp_path: Path) -> None:
    import warnings

    from PIL import Image

    import genvae
    from genvae.errors import TrainingAdvice

    (tmp_path / "small").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 10, 3), 40 * i, dtype=np.uint8)).save(tmp_path / "small" / f"{i}.png")
    with pytest.warns(TrainingAdvice, match=r"at most 8 pixels on their shorter side, smaller than data.resolution 16: .* --set data.resolution=8 trains"):
        genvae.train(tmp_path / "run", objective="vae", data=str(tmp_path / "small"), steps=1, batch_size=4,
                     settings={"data.resolution": 16, "arch.channels": [4], "train.figures_every": 0})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingAdvice)  # neither a trained run reopened nor its resume repeats it
        genvae.load_run(tmp_path / "run")
        genvae.train(tmp_path / "run", steps=2, resume=True)
        ImageFolder(str(tmp_path / "small"), resolution=8)  # at their size


def test_many_sampled_images_are_drawn_as_a_square_not_a_strip(tmp_path: Path) -> None:
    from PIL import Image

    from genvae.core.interfaces import DataSource

    class Small(DataSource):
        shape = (1, 8, 8)

        def train_stream(self, batch_size, seed, rank=0, world_size=1):
            raise NotImplementedError

    Small().plot_samples(torch.rand(16, 1, 8, 8), tmp_path / "few.png")
    Small().plot_samples(torch.rand(400, 1, 8, 8), tmp_path / "many.png")
    width, height = Image.open(tmp_path / "few.png").size
    assert width > height  # 8 columns, 2 rows
    width, height = Image.open(tmp_path / "many.png").size
    assert width == height  # 20 x 20, where 8 columns made a strip of 50 rows
