"""`genvae encode`: posterior parameters of a dataset, KL per latent dimension, active units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genvae.cli import app
from genvae.latents import active_units, encode_data, kl_per_dimension, summary

MU = np.array([[0.0, 1.0], [0.0, -1.0]])
LOGVAR = np.array([[0.0, math.log(4.0)], [0.0, math.log(4.0)]])


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


def test_kl_per_dimension_and_active_units_by_hand():
    # dim 0: μ = 0, σ² = 1 in both images -> KL 0, no variation; dim 1: μ = ±1, σ² = 4 -> ½(1 + 4 − log 4 − 1)
    assert kl_per_dimension(MU, LOGVAR) == pytest.approx([0.0, 0.5 * (4.0 - math.log(4.0))])
    assert active_units(MU).tolist() == [False, True]  # Var(μ_1) = 1 > 0.01
    stats = summary({"mu": MU, "logvar": LOGVAR, "groups": {"class": 1, "content": 1}})
    assert (stats["active_units"], stats["active_units_class"], stats["active_units_content"]) == (1, 0, 1)
    assert stats["kl_class"] == 0.0 and stats["kl"] == pytest.approx(stats["kl_content"])


def test_encode_writes_the_posteriors_and_says_what_it_found(digits_run_dir, tmp_path):
    out = tmp_path / "z" / "latents.npz"
    result, text = invoke("encode", digits_run_dir, "-n", 40, "--out", out)
    assert result.exit_code == 0, text
    saved = np.load(out)
    assert saved["mu"].shape == saved["logvar"].shape == (40, 4) and saved["labels"].shape == (40,)
    stats = summary({"mu": saved["mu"], "logvar": saved["logvar"], "groups": {"z": 4}})
    assert f"encoded 40 images: {stats['active_units']} of 4 latent dimensions active; KL {stats['kl']:.2f} nats" in text
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_an_encoder_that_ignores_its_input_has_no_active_units(digits_run_dir):
    from genvae.core.run import load_run

    run = load_run(digits_run_dir)
    last = [m for m in run.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()  # μ and log σ² become the bias: the same posterior for every image
    encoded = encode_data(run, n=50)
    mu, logvar = last.bias.detach().chunk(2)
    expected = 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum().item()
    assert summary(encoded)["active_units"] == 0
    assert summary(encoded)["kl"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--data", "8gaussians"], "dataset '8gaussians' has shape (2,) but the model was trained on (1, 16, 16)"),
        (["--split", "val"], "--split must be train or test, got 'val'"),
        (["--out", "z.csv"], "--out must end in .npz, got 'z.csv'"),
    ],
)
def test_bad_requests_are_one_line_errors(digits_run_dir, tmp_path, args, expected):
    result, text = invoke("encode", digits_run_dir, *args)
    assert result.exit_code == 2 and expected in text and "Traceback" not in result.output, result.output


def test_eval_latents_records_active_units_and_kl(digits_run_dir, tmp_path):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run_dir, run)
    shutil.rmtree(run / "metrics", ignore_errors=True)
    result, text = invoke("eval", "latents", run, "-n", 40)
    assert result.exit_code == 0, text
    record = json.loads((run / "metrics" / "latents.jsonl").read_text())
    from genvae.core.run import load_run

    stats = summary(encode_data(load_run(run), n=40))
    assert record["active_units"] == stats["active_units"] and record["kl"] == pytest.approx(stats["kl"])
    assert (record["images"], record["z_dim"], record["step"]) == (40, 4, 5) and (run / "metrics" / "latents.png").is_file()
    info, text = invoke("info", run)
    assert "eval latents active_units" in text and "split test" in text


def test_latents_during_training_follow_the_posterior(tmp_path):
    """Appendix 9.5's collapse as a curve: the latents metric during training."""
    import genvae
    from genvae.viz.curves import read_records

    settings = {"arch.hidden": 16, "train.log_every": 5, "train.figures_every": 0, "train.eval_every": 5, "train.eval": ["latents"],
                "train.eval_options": {"latents": {"n": 64, "figure": False}}}
    genvae.train(tmp_path / "run", objective="vae", data="8gaussians", steps=10, batch_size=32, settings=settings)
    records = read_records(tmp_path / "run" / "evals.jsonl")
    assert [r["step"] for r in records] == [0, 5, 10] and all({"latents.kl", "latents.active_units"} <= set(r) for r in records)


def test_a_dimension_is_active_when_the_variance_of_its_mean_exceeds_0_01():
    """Var over the images (ddof 0) of E_q[z_d|x] > 0.01 (Burda et al. 2016): columns of variance
    0.008 (sample variance 0.016, std 0.09) and 0.02; a variance equal to the threshold is not above it."""
    a, b = math.sqrt(0.008), math.sqrt(0.02)
    mu = np.array([[a, b], [-a, -b]])
    assert active_units(mu).tolist() == [False, True]
    assert active_units(np.array([[0.5], [-0.5]]), threshold=0.25).tolist() == [False]  # variance exactly 0.25
