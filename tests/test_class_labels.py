"""`--label` of sample, reconstruct and interpolate: the class a class-conditional run decodes
(and encodes) your images with, by index or by a folder's class name; one-line errors otherwise."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import genvae
from genvae.cli import app
from genvae.viz.images import INTERPOLATION_CAPTION, interpolation_grid, load_images, make_grid, save_grid

ARRAY = {"arch.channels": [4], "arch.z_dim": 4, "train.figures_every": 0}
SMALL = {**ARRAY, "data.resolution": 8}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A class-conditional run on a folder of three classes (birds, cats, dogs: 0, 1, 2), an
    unconditional one on the same images, and a conditional one on an array (no class names)."""
    root = tmp_path_factory.mktemp("labels")
    rng = np.random.default_rng(0)
    for name in ("birds", "cats", "dogs"):
        (root / "pets" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "pets" / name / f"{i}.png")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    genvae.train(root / "cond", objective="vae", data=str(root / "pets"), steps=1, batch_size=6,
                 settings={**SMALL, "data.labels": True, "train.conditional": True})  # fmt: skip
    genvae.train(root / "plain", objective="vae", data=str(root / "pets"), steps=1, batch_size=6, settings=SMALL)
    np.savez(root / "a.npz", x=rng.random((12, 8, 8)).astype(np.float32), y=np.arange(12) % 2)
    genvae.train(root / "array", objective="vae", data=str(root / "a.npz"), steps=1, batch_size=6,
                 settings={**ARRAY, "data.labels": "y", "train.conditional": True})  # fmt: skip
    torch.set_num_threads(old)
    return root


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    return result.exit_code, result.output


def test_reconstruct_encodes_and_decodes_with_the_label(runs, tmp_path):
    code, output = invoke("reconstruct", runs / "cond", runs / "pets" / "cats", "--label", "2", "--out", tmp_path / "r.png")
    assert code == 0, output
    run = genvae.load_run(runs / "cond")
    x = load_images(sorted((runs / "pets" / "cats").glob("*.png")), run.data.shape)
    y = torch.full((len(x),), 2)
    with torch.no_grad():
        expected = (run.models.decode(run.models.encode(x, y)[0], y).clamp(0, 1) - x).flatten(1).pow(2).sum(1)
    printed = [float(e) for e in re.findall(r"squared error ([0-9.e+-]+)", output)]
    assert printed == [float(f"{e:.4g}") for e in expected.tolist()]


def test_reconstruct_takes_the_labels_of_an_npz_like_the_runs_own(runs, tmp_path):
    """A run trained on an .npz with data.labels=y reconstructs another such .npz with each image's
    own class; --label still sets one class for all; labels beyond the run's classes are one line."""
    rng = np.random.default_rng(2)
    images, labels = rng.random((4, 8, 8)).astype(np.float32), np.array([1, 0, 1, 0])
    np.savez(tmp_path / "mine.npz", x=images, y=labels)
    code, output = invoke("reconstruct", runs / "array", tmp_path / "mine.npz", "--out", tmp_path / "r.png")
    assert code == 0, output
    run = genvae.load_run(runs / "array")
    x, y = torch.from_numpy(np.round(images * 255)).float()[:, None] / 255, torch.from_numpy(labels)  # arrays are read as uint8 images
    with torch.no_grad():
        expected = (run.models.decode(run.models.encode(x, y)[0], y).clamp(0, 1) - x).flatten(1).pow(2).sum(1)
    printed = [float(e) for e in re.findall(r"squared error ([0-9.e+-]+)", output)]
    assert printed == [float(f"{e:.4g}") for e in expected.tolist()]
    code, output = invoke("reconstruct", runs / "array", tmp_path / "mine.npz", "--label", "0", "--out", tmp_path / "r0.png")
    assert code == 0 and [float(e) for e in re.findall(r"squared error ([0-9.e+-]+)", output)] != printed
    np.savez(tmp_path / "beyond.npz", x=images, y=np.array([0, 1, 2, 3]))
    code, output = invoke("reconstruct", runs / "array", tmp_path / "beyond.npz", "--out", tmp_path / "r.png")
    assert code == 2 and output.count("\n") == 1 and "labels 'y' go up to 3, and run" in output and "has 2 classes (0..1)" in output
    np.save(tmp_path / "plain.npy", images)  # no labels: --label is still needed
    code, output = invoke("reconstruct", runs / "array", tmp_path / "plain.npy", "--out", tmp_path / "r.png")
    assert code == 2 and "give it with --label" in output


def test_a_class_name_is_the_same_class_as_its_index(runs, tmp_path):
    for label, name in (("dogs", "by_name.png"), ("2", "by_index.png"), ("0", "other.png")):
        code, output = invoke("reconstruct", runs / "cond", runs / "pets" / "cats", "--label", label, "--out", tmp_path / name)
        assert code == 0, output
    assert (tmp_path / "by_name.png").read_bytes() == (tmp_path / "by_index.png").read_bytes()
    assert (tmp_path / "by_name.png").read_bytes() != (tmp_path / "other.png").read_bytes()  # the label changes the picture


def test_sample_draws_every_sample_of_the_label(runs, tmp_path):
    code, output = invoke("sample", runs / "cond", "-n", 5, "--label", "cats", "--seed", 3, "--out", tmp_path / "s.pt")
    assert code == 0, output
    run = genvae.load_run(runs / "cond")
    z = torch.randn(5, run.models.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "s.pt"), run.models.decode(z, torch.full((5,), 1)))
        cycled = run.models.decode(z, torch.arange(5) % 3)
    assert "wrote 5 samples of class cats to" in output
    code, output = invoke("sample", runs / "cond", "-n", 5, "--seed", 3, "--out", tmp_path / "c.pt")
    assert code == 0 and torch.equal(torch.load(tmp_path / "c.pt"), cycled)  # without --label: the classes in turn
    assert "wrote 5 samples (classes 0..2 in turn; --label for one) to" in output
    code, output = invoke("sample", runs / "cond", "-n", 5, "--seed", 3, "--out", tmp_path / "c.png")
    assert code == 0 and "wrote 5 samples (one row per class, 0..2; --label for one) to" in output
    rows = torch.ones(6, *cycled.shape[1:])  # classes 0 and 1 drew two samples, class 2 one: the last cell white
    rows[[0, 2, 4, 1, 3]] = cycled
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), np.asarray(Image.open(save_grid(make_grid(rows, nrow=2), tmp_path / "rows.png"))))


def test_interpolate_decodes_the_square_with_the_label(runs, tmp_path):
    code, output = invoke("interpolate", runs / "cond", runs / "pets" / "birds", "--label", "cats", "--steps", 3, "--out", tmp_path / "i.png")
    assert code == 0, output
    run = genvae.load_run(runs / "cond")
    corners = load_images(sorted((runs / "pets" / "birds").glob("*.png")), run.data.shape)
    for label, name in ((1, "cats.png"), (0, "birds.png")):
        grid = interpolation_grid(run.models, corners, steps=3, labels=torch.full((4,), label))
        save_grid(grid, tmp_path / name, f"{INTERPOLATION_CAPTION}, all of class cats")
    drawn = np.asarray(Image.open(tmp_path / "i.png"))
    assert np.array_equal(drawn, np.asarray(Image.open(tmp_path / "cats.png")))
    assert not np.array_equal(drawn, np.asarray(Image.open(tmp_path / "birds.png")))  # another class draws another square


@pytest.mark.parametrize("command", ["reconstruct", "interpolate"])
def test_a_conditional_run_without_label_names_the_classes(runs, tmp_path, command):
    code, output = invoke(command, runs / "cond", runs / "pets" / "cats", "--out", tmp_path / "x.png")
    assert code == 2 and output.count("\n") == 1
    assert f"is class-conditional (3 classes) and {command} does not know your images' class; give it with --label: an index 0..2 or a name (birds, cats, dogs)" in output


@pytest.mark.parametrize("command", ["sample", "reconstruct", "interpolate"])
def test_a_label_for_an_unconditional_run_is_refused(runs, tmp_path, command):
    images = [] if command == "sample" else [runs / "pets" / "cats"]
    code, output = invoke(command, runs / "plain", *images, "--label", "1", "--out", tmp_path / "x.png")
    assert code == 2 and output.count("\n") == 1 and "is not class-conditional, so it takes no class; leave out --label 1" in output


@pytest.mark.parametrize("command", ["sample", "reconstruct", "interpolate"])
def test_a_label_out_of_range_or_unknown_is_one_line(runs, tmp_path, command):
    images = [] if command == "sample" else [runs / "pets" / "cats"]
    code, output = invoke(command, runs / "cond", *images, "--label", "3", "--out", tmp_path / "x.png")
    assert code == 2 and output.count("\n") == 1 and "--label 3 is out of range: run" in output and "has 3 classes; give an index 0..2 or a name" in output
    code, output = invoke(command, runs / "cond", *images, "--label", "cts", "--out", tmp_path / "x.png")
    assert code == 2 and output.count("\n") == 1 and "--label 'cts' is no class of run" in output and "(did you mean 'cats'?)" in output
    code, output = invoke(command, runs / "array", *images, "--label", "cats", "--out", tmp_path / "x.png")
    assert code == 2 and "(the run's data names no classes here); give an index 0..1" in output


def test_info_says_a_run_is_class_conditional(runs):
    code, output = invoke("info", runs / "cond")
    assert code == 0 and "classes 3: class-conditional; sample, reconstruct and interpolate take the class with --label" in " ".join(output.split())
    code, output = invoke("info", runs / "plain")
    assert code == 0 and "class-conditional" not in output
    code, output = invoke("info", runs)  # one line per run: the conditional ones say so
    lines = {line.split()[1]: line for line in output.splitlines() if line.split()[1:2] and line.split()[1] in ("cond", "plain", "array")}
    assert "folder (3 classes, conditional)" in lines["cond"] and "image-array (2 classes, conditional)" in lines["array"], output
    assert "conditional" not in lines["plain"]


def test_scoring_a_conditional_run_on_unlabelled_data_names_the_fix(runs, tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "plain.npy", rng.random((6, 8, 8)).astype(np.float32))
    np.savez(tmp_path / "labelled.npz", x=rng.random((6, 8, 8)).astype(np.float32), y=np.arange(6) % 2)
    code, output = invoke("eval", "likelihood", runs / "array", "--data", tmp_path / "plain.npy", "--samples", 2)
    assert code == 2 and output.count("\n") == 1
    assert ("error: the run is class-conditional: it scores each image with its class, and the image-array data given has no labels; "
            "give labelled data, e.g. image-array:path=F.npz,labels=KEY or folder:path=DIR,labels=true") in output  # fmt: skip
    code, output = invoke("eval", "likelihood", runs / "array", "--data", f"image-array:path={tmp_path / 'labelled.npz'},labels=y", "--samples", 2)
    assert code == 0, output  # the fix it names works


def test_the_standard_datasets_name_their_classes_in_label_order(shared_data):
    import pickle
    from types import SimpleNamespace

    from genvae.commands.common import class_index
    from genvae.plugins.datasets.images import CIFAR10, FashionMNIST

    with open(shared_data / "cifar10-partial" / "batches.meta", "rb") as f:
        assert tuple(pickle.load(f)["label_names"]) == CIFAR10.class_names  # the files' own names
    conditional = SimpleNamespace(config={"num_classes": 10})
    assert class_index(SimpleNamespace(encoder=conditional, data=CIFAR10), "run", "cat", "sample") == 3
    assert class_index(SimpleNamespace(encoder=conditional, data=FashionMNIST), "run", "Sneaker", "sample") == 7
