"""Images as one array: `--data images.npy` (or .npz with labels) and `genvae.train(data=array)`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genvae
from genvae.cli import app
from genvae.core.config import merge_user
from genvae.core.run import resolve
from genvae.errors import ConfigError, DataError, RunDirError
from genvae.plugins.datasets.image_array import ImageArray, as_uint8_images, holds_images

SMALL = {"arch.channels": [8, 16], "arch.z_dim": 4, "train.figures_every": 0, "train.log_every": 1}


def images(n: int = 12, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size)).astype(np.float32)


def test_layouts_and_pixel_values_are_read_as_uint8_images():
    grey = images(3)
    expected = np.round(grey * 255).astype(np.uint8)[:, None]
    assert np.array_equal(as_uint8_images(grey, "x"), expected)  # (N, H, W) floats in [0, 1]
    rgb = np.random.default_rng(1).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    assert np.array_equal(as_uint8_images(rgb, "x"), rgb)  # (N, C, H, W) uint8
    assert np.array_equal(as_uint8_images(rgb.transpose(0, 2, 3, 1), "x"), rgb)  # (N, H, W, C)
    assert np.array_equal(as_uint8_images(rgb.astype(np.int64), "x"), rgb)
    with pytest.raises(DataError, match=r"x holds float pixels from 0 to 255; give floats in \[0, 1\] \(x / 255"):
        as_uint8_images(rgb.astype(np.float32), "x")
    with pytest.raises(DataError, match=r"x holds 8x6 images; the architectures take square ones"):
        as_uint8_images(rgb[..., :6], "x")
    with pytest.raises(DataError, match=r"x holds an array of shape \(2, 5, 8, 8\); give images as \(N, H, W\)"):
        as_uint8_images(np.zeros((2, 5, 8, 8)), "x")
    with pytest.raises(DataError, match="x holds NaN or infinite pixels"):
        as_uint8_images(np.full((2, 8, 8), np.nan), "x")


def test_a_file_of_images_is_told_from_a_file_of_rows(tmp_path):
    np.save(tmp_path / "imgs.npy", images())
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(10, 2)))
    np.savez(tmp_path / "both.npz", x=images(), y=np.arange(12) % 3)
    assert holds_images(tmp_path / "imgs.npy") and holds_images(tmp_path / "both.npz")
    assert not holds_images(tmp_path / "rows.npy")
    cfg, data = resolve(merge_user(None, [], {"data.name": str(tmp_path / "imgs.npy")}))
    assert cfg.data["name"] == "image-array" and data.shape == (1, 8, 8) and cfg.arch["name"] == "residual"
    cfg, _ = resolve(merge_user(None, [], {"data.name": str(tmp_path / "rows.npy")}))
    assert cfg.data["name"] == "points"


def test_small_images_get_a_reconstruction_weight_for_their_size(tmp_path):
    """β_rec = 784 / values below 28x28 grey (8x8: 12.25), the paper's 1 from there up, for both
    objectives; a user's setting still wins."""
    np.save(tmp_path / "small.npy", images(size=8))
    np.save(tmp_path / "mnist-size.npy", images(size=28))
    for file, objective, expected in [("small", "soft-intro", 12.25), ("small", "vae", 12.25), ("mnist-size", "soft-intro", 1.0)]:
        cfg, _ = resolve(merge_user(None, [], {"data.name": str(tmp_path / f"{file}.npy"), "objective.name": objective}))
        assert cfg.objective["beta_rec"] == expected, (file, objective)
    cfg, _ = resolve(merge_user(None, ["objective.beta_rec=2"], {"data.name": str(tmp_path / "small.npy")}))
    assert cfg.objective["beta_rec"] == 2.0
    from PIL import Image

    (tmp_path / "faces").mkdir()
    for i, image in enumerate(images(n=3, size=16)):
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "faces" / f"{i}.png")
    for resolution, channels, expected in [(8, 1, 12.25), (14, 3, 784 / 588), (64, 3, 1.0)]:
        settings = {"data.name": str(tmp_path / "faces"), "data.resolution": resolution, "data.channels": channels}
        cfg, _ = resolve(merge_user(None, [], settings))
        assert cfg.objective["beta_rec"] == pytest.approx(expected), (resolution, channels)


def test_labels_and_a_held_out_split(tmp_path):
    np.savez(tmp_path / "d.npz", x=images(20), y=np.arange(20) % 4)
    data = ImageArray(str(tmp_path / "d.npz"), labels="y", test_fraction=0.25)
    assert data.num_classes == 4 and data.has_test_split
    assert data.split_size("train") == 15 and data.split_size("test") == 5
    train, test = set(data.index["train"].tolist()), set(data.index["test"].tolist())
    assert not train & test and len(train | test) == 20
    batch = data.test_batch(5)
    assert batch.x.shape == (5, 1, 8, 8) and batch.y is not None
    with pytest.raises(DataError, match=r"holds no array 'labels'; its arrays: x, y"):
        ImageArray(str(tmp_path / "d.npz"), labels="labels")
    np.savez(tmp_path / "two.npz", a=images(), b=images())
    with pytest.raises(DataError, match=r"holds 2 arrays of images \(a, b\); choose one with data.key=NAME \(where a command takes data: image-array:path=\S*two.npz,key=NAME\)$"):
        ImageArray(str(tmp_path / "two.npz"))
    np.savez(tmp_path / "bad.npz", x=images(4), y=np.array([0.5, 1, 2, 3]))
    with pytest.raises(DataError, match="data.labels=y must hold one integer class"):
        ImageArray(str(tmp_path / "bad.npz"), labels="y")
    np.save(tmp_path / "imgs.npy", images())
    with pytest.raises(ConfigError, match="data.labels names an array of an .npz"):
        ImageArray(str(tmp_path / "imgs.npy"), labels="y")
    np.savez(tmp_path / "neg.npz", x=images(4), y=np.array([0, 1, -1, 2]))
    with pytest.raises(DataError, match=r"data.labels=y holds the class -1; classes are numbered 0, 1, ..."):
        ImageArray(str(tmp_path / "neg.npz"), labels="y")
    np.savez(tmp_path / "huge.npz", x=images(4), y=np.array([0, 1, 2, 900000]))
    with pytest.raises(DataError, match=r"holds the class 900000; .* renumber them"):  # would have built a 900001-class decoder
        ImageArray(str(tmp_path / "huge.npz"), labels="y")
    with pytest.raises(ConfigError, match=r"data.labels names the .npz array of class labels \(e.g. data.labels=y\), not true"):
        ImageArray(str(tmp_path / "d.npz"), labels="true")
    np.save(tmp_path / "five.npy", np.zeros((2, 1, 1, 8, 8)))
    from genvae.plugins.datasets.points_file import PointsFile

    with pytest.raises(DataError) as five:
        PointsFile(str(tmp_path / "five.npy"))
    assert "image-array" not in str(five.value)  # it would fail there the same way


def test_train_and_evaluate_a_file_of_images_from_the_cli(tmp_path, one_thread):
    np.savez(tmp_path / "faces.npz", images=(images(16) * 255).astype(np.uint8)[..., None], labels=np.arange(16) % 2)
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "faces.npz"), "--set", "data.labels=labels", "--steps", "3",
                                      "--batch-size", "4", "--no-progress", "--run-dir", str(tmp_path / "run"), *sets])  # fmt: skip
    assert result.exit_code == 0, result.output
    evaluated = CliRunner().invoke(app, ["eval", "likelihood", str(tmp_path / "run"), "-n", "8", "--samples", "2"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["labels"] == "labels"
    np.save(tmp_path / "mine.npy", (images(5) * 255).astype(np.uint8))
    rec = CliRunner().invoke(app, ["reconstruct", str(tmp_path / "run"), str(tmp_path / "mine.npy"), "--out", str(tmp_path / "r.png")])
    assert rec.exit_code == 0 and "mine.npy[4]  squared error" in rec.output and (tmp_path / "r.png").is_file(), rec.output
    np.save(tmp_path / "big.npy", (images(2, size=16) * 255).astype(np.uint8))
    big = CliRunner().invoke(app, ["reconstruct", str(tmp_path / "run"), str(tmp_path / "big.npy")], env={"COLUMNS": "300"})
    assert big.exit_code == 2 and big.output.count("\n") == 1 and ("big.npy holds images of shape (1, 16, 16) and the run's are (1, 8, 8); "
                                                                  "an array is taken as it is: give one of the run's shape, or the images as files, which are resized") in big.output  # fmt: skip


def test_python_trains_on_arrays_in_memory_and_the_run_keeps_them(tmp_path, one_thread):
    x, y = torch.from_numpy(images(16)), np.arange(16) % 2
    result = genvae.train(tmp_path / "img", data=(x, y), steps=2, batch_size=4, objective="vae", settings=SMALL)
    assert result.step == 2 and (tmp_path / "img" / "data.npz").is_file()
    run = genvae.load_run(tmp_path / "img")
    assert run.config.data["name"] == "image-array" and run.data.num_classes == 2 and run.data.shape == (1, 8, 8)
    points = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    genvae.train(tmp_path / "pts", data=points, steps=2, batch_size=16, objective="vae", settings={"arch.hidden": 8, "train.figures_every": 0})
    assert genvae.load_run(tmp_path / "pts").config.data["name"] == "points"
    shutil.move(tmp_path / "pts", tmp_path / "moved")  # the run finds its array where it is now
    assert genvae.train(tmp_path / "moved", steps=4, resume=True).step == 4
    assert genvae.load_run(tmp_path / "moved").data.split_size("train") == 64
    with pytest.raises(ConfigError, match="resume=True continues on the run's saved data"):
        genvae.train(tmp_path / "moved", data=points, steps=6, resume=True)
    with pytest.raises(ConfigError, match=r"data must be a dataset name, a path, or an array .*; got list"):
        genvae.train(tmp_path / "bad", data=[[1.0, 2.0]])
    with pytest.raises(ConfigError, match="labels are taken with images, not with points"):
        genvae.train(tmp_path / "bad", data=(points, np.zeros(64)))
    with pytest.raises(RunDirError, match="already exists"):
        genvae.train(tmp_path / "img", data=x, steps=2)
    with pytest.raises(ConfigError, match=r"data holds an empty array \(shape \(0, 2\)\)"):
        genvae.train(tmp_path / "empty", data=np.zeros((0, 2)))
    with pytest.raises(DataError, match=r"^data holds float pixels from 0 to 16; give floats in \[0, 1\] \(x / 255 for 0-255 values\) or uint8$"):
        genvae.train(tmp_path / "range", data=np.linspace(0, 16, 16 * 64).reshape(16, 8, 8))  # named as given, not as RUN/data.npz
    assert not (tmp_path / "range").exists()
    with pytest.raises(ConfigError, match="unknown"):  # a mistake in the settings: the array saved for the run goes again
        genvae.train(tmp_path / "typo", data=points, steps=2, settings={"arch.hiden": 8})
    assert not (tmp_path / "typo").exists()
    half = genvae.train(tmp_path / "bf16", data=x.to(torch.bfloat16), steps=1, batch_size=4, objective="vae", settings=SMALL)  # no NumPy bf16
    assert half.step == 1
    result = CliRunner().invoke(app, ["sample", str(tmp_path / "img"), "-n", "5", "--out", str(tmp_path / "s.npy")])
    assert result.exit_code == 0 and np.load(tmp_path / "s.npy").shape == (5, 1, 8, 8)  # images keep their shape


def test_a_resume_on_data_of_another_shape_or_classes_is_one_line(tmp_path, one_thread):
    np.save(tmp_path / "small.npy", images(16))
    np.save(tmp_path / "rgb.npy", np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    genvae.train(tmp_path / "run", data=str(tmp_path / "small.npy"), objective="vae", steps=2, batch_size=4, settings=SMALL)
    with pytest.raises(DataError, match=r"resume=True: image-array now holds samples of shape \(3, 8, 8\), where the run was trained on shape \(1, 8, 8\)"):
        genvae.train(tmp_path / "run", steps=4, resume=True, settings={"data.path": str(tmp_path / "rgb.npy")})
    np.savez(tmp_path / "l2.npz", x=images(16), y=np.arange(16) % 2)
    np.savez(tmp_path / "l3.npz", x=images(16), y=np.arange(16) % 3)
    cond = {**SMALL, "train.conditional": True, "data.labels": "y"}
    genvae.train(tmp_path / "cond", data=str(tmp_path / "l2.npz"), objective="vae", steps=2, batch_size=4, settings=cond)
    with pytest.raises(DataError, match=r"now holds 3 classes, where the run was trained on 2 classes"):
        genvae.train(tmp_path / "cond", steps=4, resume=True, settings={"data.path": str(tmp_path / "l3.npz")})


def test_loaded_image_models_say_which_axis_is_missing_and_check_labels(tmp_path, one_thread):
    np.savez(tmp_path / "l2.npz", x=images(16), y=np.arange(16) % 2)
    cond = {**SMALL, "train.conditional": True, "data.labels": "y"}
    genvae.train(tmp_path / "cond", data=str(tmp_path / "l2.npz"), objective="vae", steps=2, batch_size=4, settings=cond)
    run = genvae.load_run(tmp_path / "cond")
    x = images(3)
    with pytest.raises(DataError, match=r"encode takes a batch of shape \(N, 1, 8, 8\), the run's samples; got \(3, 8, 8\): the channel axis is missing, give x\[:, None\]"):
        run.models.encode(x, np.zeros(3, dtype=np.int64))
    mu, _ = run.models.encode(x[:, None], np.zeros(3, dtype=np.int64))  # NumPy in, tensors out
    with pytest.raises(DataError, match="class labels from 0 to 5, but the model knows classes 0 to 1"):
        run.models.decode(mu, np.array([0, 1, 5]))
    with pytest.raises(DataError, match="this model is class-conditional: pass each sample's class label y"):
        run.models.decode(mu)
    result = CliRunner().invoke(app, ["reconstruct", str(tmp_path / "cond"), str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "is class-conditional (2 classes) and reconstruct does not know your images' class; give it with --label: an index 0..1" in " ".join(result.output.split())


def test_one_file_named_two_ways_is_recorded_as_one(tmp_path, monkeypatch):
    """--out ood.npy and --out image-array:path=ood.npy were recorded as different data, and compare warned."""
    from genvae.plugins.metrics.fid import open_data

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "ood.npy", images(4))
    assert open_data("ood.npy")[1] == open_data("image-array:path=ood.npy")[1] == f"image-array:{tmp_path / 'ood.npy'}"


def test_a_conditional_run_on_an_array_without_labels_names_the_setting(tmp_path):
    np.savez(tmp_path / "d.npz", x=images(8), y=np.arange(8) % 2)
    with pytest.raises(ConfigError, match=r"has no labels; name the .npz's array of class labels with --set data.labels=NAME$"):
        resolve(merge_user(None, ["train.conditional=true"], {"data.name": str(tmp_path / "d.npz")}))
    with pytest.raises(ConfigError, match=r"^train.conditional = 'yes' has the wrong type; expected bool \(true or false\)$"):
        resolve(merge_user(None, ['train.conditional="yes"', "data.labels='y'"], {"data.name": str(tmp_path / "d.npz")}))
