"""`genvae reconstruct RUN IMAGES...`: the user's image files (or folders) beside their
reconstructions, with the error of each computed as the model computes it."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

import genvae
from genvae.cli import app
from genvae.viz.images import caption_height


def test_files_and_folders_are_reconstructed_and_scored(tmp_path, digits_run_dir):
    run = genvae.load_run(digits_run_dir)
    test = run.data.test_batch(3, seed=0).x  # (3, 1, 16, 16) in [0, 1], from uint8
    folder = tmp_path / "digits"
    folder.mkdir()
    for i, image in enumerate(test):
        Image.fromarray((image[0] * 255).round().byte().numpy()).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "rec.png"
    result = CliRunner().invoke(app, ["reconstruct", str(digits_run_dir), str(folder), str(folder / "0.png"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = [float(e) for e in re.findall(r"squared error ([0-9.e+-]+)", result.output)]
    with torch.no_grad():
        expected = (run.models.decode(run.models.encode(test)[0]).clamp(0, 1) - test).flatten(1).pow(2).sum(1)
    assert printed == [float(f"{e:.4g}") for e in [*expected.tolist(), expected[0].item()]]
    assert "(4 images, 1×16×16" in result.output
    width, height = Image.open(out).size
    height -= caption_height("odd rows: your images; even rows: their reconstructions D(mu(x))", width)
    assert width / height == (4 * 18 + 2) / (2 * 18 + 2)  # one row of 4 images above one of their reconstructions


def test_a_16_bit_image_is_reconstructed_as_its_8_bit_twin(tmp_path, digits_run_dir):
    run = genvae.load_run(digits_run_dir)
    image = (run.data.test_batch(1, seed=0).x[0, 0] * 255).round().numpy().astype(np.uint16)
    Image.fromarray(image.astype(np.uint8)).save(tmp_path / "a8.png")
    Image.fromarray(image * 257).save(tmp_path / "a16.png")  # the same picture in 16 bits (mode I;16)
    result = CliRunner().invoke(app, ["reconstruct", str(digits_run_dir), str(tmp_path / "a8.png"), str(tmp_path / "a16.png"), "--out", str(tmp_path / "r.png")])
    assert result.exit_code == 0, result.output
    errors = re.findall(r"squared error ([0-9.e+-]+)", result.output)
    assert len(errors) == 2 and errors[0] == errors[1], result.output  # before: the 16-bit one was read all white


def test_clear_errors(tmp_path, digits_run_dir):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["reconstruct", str(digits_run_dir), str(empty)])
    assert result.exit_code == 2 and "no image files" in result.output
    missing = runner.invoke(app, ["reconstruct", str(digits_run_dir), str(tmp_path / "nope.png")])
    assert missing.exit_code == 2 and "does not exist; check the path" in " ".join(missing.output.split())
    genvae.train(tmp_path / "points", objective="vae", data="8gaussians", steps=2, batch_size=8, settings={"arch.hidden": 8})
    points = runner.invoke(app, ["reconstruct", str(tmp_path / "points"), str(empty)])
    assert points.exit_code == 2 and "not trained on images" in points.output


def test_a_folder_as_gathered_in_practice(tmp_path, digits_run_dir):
    """Symlinked subfolders are followed; a corrupt file and a dangling link are skipped with one
    warning naming them (as training skips them); macOS "._" files are left out; --max says how
    many were left; --out must be a picture format."""
    folder, elsewhere = tmp_path / "mine", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    for i, where in enumerate([folder, folder, elsewhere]):
        Image.fromarray((np.random.default_rng(i).random((16, 16)) * 255).astype(np.uint8)).save(where / f"{i}.png")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # followed once only
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    (folder / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    result = CliRunner().invoke(app, ["reconstruct", str(digits_run_dir), str(folder), "--out", str(tmp_path / "r.png")], env={"COLUMNS": "300"})
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"warning: skipped 2 unreadable image file(s): {folder / 'broken.png'}, {folder / 'dangling.png'}" in output
    assert str(folder / "linked" / "2.png") in output and "(3 images, 1×16×16" in output
    limited = CliRunner().invoke(app, ["reconstruct", str(digits_run_dir), str(folder / "0.png"), str(folder / "1.png"), "--max", "1", "--out", str(tmp_path / "r.png")])
    assert "(1 image; the first 1 of 2 files, --max for more, 1×16×16" in " ".join(limited.output.split())
    bad = CliRunner().invoke(app, ["reconstruct", str(digits_run_dir), str(folder), "--out", str(tmp_path / "r.pt")])
    assert bad.exit_code == 2 and "error: --out 'r.pt' is not a picture format" in bad.output


def test_training_follows_symlinked_folders_and_skips_macos_metadata(tmp_path):
    from genvae.plugins.datasets.image_folder import ImageFolder

    folder, elsewhere = tmp_path / "mine", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    for i, where in enumerate([folder, elsewhere]):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(where / f"{i}.png")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    data = ImageFolder(str(folder), resolution=8)
    assert data.files == [folder / "0.png", folder / "linked" / "1.png"]
