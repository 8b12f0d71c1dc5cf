"""`genvae eval likelihood`: held-out ELBO and IWAE bound of a run (the estimator itself is
checked against an exact linear-Gaussian model in test_eval_metrics.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.run import load_run
from genvae.plugins.metrics.likelihood import evaluate_likelihood
from genvae.plugins.metrics.ood import run_scores


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


def test_the_report_is_the_mean_of_the_per_image_bounds(digits_run_dir):
    run = load_run(digits_run_dir)
    result = evaluate_likelihood(run, n=60, samples=20, seed=3, write=False)
    scores = run_scores(run, run.data, "test", 60, 20, 500, 3)
    assert result["elbo"] == pytest.approx(scores["elbo"].mean()) and result["iwae"] == pytest.approx(scores["iwae"].mean())
    assert result["iwae_std_error"] == pytest.approx(scores["iwae"].std(ddof=1) / math.sqrt(60))
    assert result["nll"] == -result["iwae"] and result["bits_per_dim"] == pytest.approx(-result["iwae"] / (256 * math.log(2)))
    assert result["images"] == 60 and result["iwae"] > result["elbo"]  # the tighter bound, per image on average


def test_the_command_prints_and_records_the_result(digits_run_dir):
    result, text = invoke("eval", "likelihood", digits_run_dir, "-n", 30, "--samples", 5)
    assert result.exit_code == 0, text
    printed = json.loads(result.output)
    recorded = json.loads((digits_run_dir / "metrics" / "likelihood.jsonl").read_text().splitlines()[-1])
    assert printed == recorded and printed["images"] == 30 and printed["samples"] == 5 and printed["data"] == "digits"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--split", "val"], "--split must be train or test, got 'val'"),
        (["--samples", "0"], "--samples must be at least 1, got 0"),
        (["--data", "8gaussians"], "dataset '8gaussians' has shape (2,) but the model was trained on (1, 16, 16)"),
    ],
)
def test_bad_requests_are_one_line_errors(digits_run_dir, args, expected):
    result, text = invoke("eval", "likelihood", digits_run_dir, *args)
    assert result.exit_code == 2 and expected in text and "Traceback" not in result.output, result.output


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A 2-step VAE on a folder of six 8x8 images; the folder dataset has no held-out split."""
    import genvae

    root = tmp_path_factory.mktemp("folder-run")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
    settings = {"data.path": str(root / "images"), "data.resolution": 8, "arch.hidden": 8, "arch.z_dim": 2, "train.figures_every": 0}
    genvae.train(root / "run", objective="vae", arch="mlp", data="folder", steps=2, batch_size=2, settings=settings)
    return root


NO_TEST_SPLIT = "warning: the folder dataset has no held-out split: its 'test' images are the training ones"


@pytest.mark.parametrize(
    "command, reported",
    [
        (["eval", "likelihood", "{run}", "--samples", "2"], '"split": "train (folder has no test split)"'),
        (["eval", "ood", "{run}", "--out", "folder:path={other},resolution=8", "--samples", "2"], '"in_split": "train (folder has no test split)"'),
    ],
)
def test_a_folder_run_is_not_reported_as_held_out(folder_run, command, reported):
    other = folder_run / "other"
    other.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(other / "black.png")
    result, text = invoke(*(a.format(run=folder_run / "run", other=other) for a in command))
    assert result.exit_code == 0, text
    assert reported in text and NO_TEST_SPLIT in text


def test_a_folder_run_encoded_says_the_images_are_its_training_ones(folder_run, tmp_path):
    result, text = invoke("encode", folder_run / "run", "--out", tmp_path / "latents.npz")
    assert result.exit_code == 0 and NO_TEST_SPLIT in text, text


def test_another_folder_is_held_out(folder_run):
    other = folder_run / "held-out"
    other.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(other / "black.png")
    result, text = invoke("eval", "likelihood", folder_run / "run", "--data", f"folder:path={other},resolution=8", "--samples", "2")
    assert result.exit_code == 0 and '"split": "test"' in text and "warning" not in text, text


@pytest.mark.parametrize("command", [["eval", "likelihood", "{run}", "--data", "{other}"], ["eval", "ood", "{run}", "--out", "{other}"]])
def test_a_plain_folder_is_read_at_the_runs_image_size(folder_run, command):
    other = folder_run / "big"  # 20x20 images, read at the run's 8x8 (the folder dataset's default would be 64)
    other.mkdir(exist_ok=True)
    Image.fromarray(np.full((20, 20, 3), 128, dtype=np.uint8)).save(other / "grey.png")
    result, text = invoke(*(a.format(run=folder_run / "run", other=other) for a in command), "--samples", "2")
    assert result.exit_code == 0, text
