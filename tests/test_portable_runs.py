"""A run keeps working when it is used from another directory or its data has moved: data paths are
saved absolute, and commands that need no data (sample, interpolate) run without it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.config import merge_user
from genvae.core.run import absolute_data_paths, load_run, resolve
from genvae.errors import DataError


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


def write_images(folder: Path, n: int = 6) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"img_{i}.png" for i in range(n)]
    for path in paths:
        Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(path)
    return paths


@pytest.fixture
def folder_run(tmp_path, monkeypatch, one_thread):
    """A 2-step VAE trained from ``tmp_path`` on the relative folder ``imgs``."""
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "imgs")
    sets = ["data.path=imgs", "data.resolution=8", "arch.channels=[4]", "arch.z_dim=3", "train.batch_size=4", "train.figures_every=0"]
    result, text = invoke("train", "--objective", "vae", "--arch", "residual", "--data", "folder", "--steps", 2, "--run-dir", "run", "--no-progress",
                          *[a for s in sets for a in ("--set", s)])  # fmt: skip
    assert result.exit_code == 0, text
    return tmp_path / "run"


def test_relative_data_paths_are_saved_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "imgs")
    cfg, _ = resolve(merge_user(None, ["data.path=imgs"], {"data.name": "folder"}))
    assert cfg.data["path"] == str(tmp_path.resolve() / "imgs")
    options = absolute_data_paths({"name": "mnist", "root": "~/data", "split": "train", "path": ""})
    assert options == {"name": "mnist", "root": str(Path.home().resolve() / "data"), "split": "train", "path": ""}


def test_a_run_resumes_and_evaluates_from_another_directory(folder_run, tmp_path, monkeypatch):
    assert json.loads((folder_run / "config.json").read_text())["data"]["path"] == str(tmp_path.resolve() / "imgs")
    result, text = invoke("train", "--run-dir", "run", "--resume", "--steps", 3, "--set", "data.path=imgs", "--no-progress")
    assert result.exit_code == 0, text  # the same relative path given again is no change
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result, text = invoke("encode", folder_run, "--out", "latents.npz")
    assert result.exit_code == 0 and "encoded 6 images" in text, text


def test_a_run_without_its_data_still_samples_and_says_what_needs_the_data(folder_run, tmp_path):
    images = sorted((tmp_path / "imgs").glob("*.png"))
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "imgs", moved)
    result, text = invoke("sample", folder_run, "--num-samples", 4, "--out", tmp_path / "samples.png")
    assert result.exit_code == 0 and Image.open(tmp_path / "samples.png").size[0] > 8, text
    corners = [moved / p.name for p in images[:4]]
    result, text = invoke("interpolate", folder_run, *corners, "--out", tmp_path / "square.png", "--steps", 3)
    assert result.exit_code == 0 and (tmp_path / "square.png").is_file(), text
    result, text = invoke("encode", folder_run, "--out", tmp_path / "latents.npz")
    assert result.exit_code == 2 and "reads the run's data, which is not available here (folder:" in text and "imgs does not exist" in text
    assert "name the data with --data (encode, eval likelihood) or --in (eval ood), e.g. --data=folder:path=DIR" in text
    result, text = invoke("encode", folder_run, "--data", f"folder:path={moved},resolution=8", "--out", tmp_path / "latents.npz")
    assert result.exit_code == 0, text  # other data can be named
    with pytest.raises(DataError, match="not available here"):
        load_run(folder_run).data.test_batch(2)


def test_a_run_whose_dataset_plugin_is_gone_still_samples_and_says_what_is_missing(tmp_path, digits_run_dir):
    run = tmp_path / "run"
    shutil.copytree(digits_run_dir, run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["name"] = "squares"  # registered by a plugin package that is no longer installed
    (run / "config.json").write_text(json.dumps(config))
    result, text = invoke("sample", run, "--num-samples", 4, "--out", tmp_path / "s.png")
    assert result.exit_code == 0 and (tmp_path / "s.png").is_file(), text
    result, text = invoke("eval", "likelihood", run)
    assert result.exit_code == 2 and "dataset 'squares', which this run was trained on, is not installed: install the plugin package" in text, text


def test_encode_of_a_folder_names_the_file_of_each_row(folder_run, tmp_path):
    """An unreadable file is left out, so rows are not files by position: the .npz says which."""
    import torch

    from genvae.viz.images import load_images

    paths = write_images(tmp_path / "mine", n=4)
    (tmp_path / "mine" / "img_1b.png").write_bytes(b"not a png")  # sorts between img_1 and img_2
    result, text = invoke("encode", folder_run, "--data", f"folder:path={tmp_path / 'mine'},resolution=8", "--out", tmp_path / "z.npz")
    assert result.exit_code == 0, text
    saved = np.load(tmp_path / "z.npz")
    assert saved["files"].tolist() == [str(p) for p in paths]
    with torch.no_grad():
        mu = load_run(folder_run).models.encode(load_images(paths, (3, 8, 8)))[0]
    assert np.allclose(saved["mu"], mu.numpy(), atol=1e-5)
