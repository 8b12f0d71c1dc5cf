"""``genvae eval ...``: metrics of a trained run (results are also written into the run)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from genvae.commands.common import EVAL_DATA, RUN_DIR, SPLIT, console, user_errors
from genvae.commands.once_only import OnceOnlyGroup

eval_app = typer.Typer(cls=OnceOnlyGroup, help="Evaluate trained runs: 2-D metrics, FID / KID / precision-recall, OOD detection.", no_args_is_help=True)


def _print(results: dict[str, Any]) -> None:
    """A metric's results as strict JSON: a value that is not a number (NaN: not measurable) is null."""

    def strict(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        return [strict(v) for v in value] if isinstance(value, (list, tuple)) else value

    console.print_json(json.dumps(strict({k: v for k, v in results.items() if not k.startswith("_")}), default=str, allow_nan=False))


@eval_app.command("toy2d")
@user_errors
def toy2d(
    run: Path = typer.Argument(..., metavar="RUN", help="A run trained on a 2-D dataset."),
    seed: int = typer.Option(0, "--seed", help="Seed of the evaluation's sampling."),
) -> None:
    """KL, JSD and grid-normalised ELBO exactly as the paper's Table 2; writes metrics.json and figures."""
    from genvae.core.plugins import get_plugins
    from genvae.core.run import load_run

    _print(get_plugins().metrics.get("toy2d").evaluate(load_run(run), seed=seed))


@eval_app.command("fid")
@user_errors
def fid(
    run: Path = typer.Argument(..., metavar="RUN", help="A run trained on images."),
    ref: str = typer.Option(..., "--ref", help="Reference: a stats .npz from 'genvae eval fid-ref', a dataset name, an image folder, or NAME:KEY=VALUE,... (e.g. folder:path=DIR,resolution=32)."),
    num_samples: int = typer.Option(50_000, "--num-samples", "-n", help="Generated images."),
    features: Optional[str] = typer.Option(None, "--features", help="Feature extractor: inception, classifier, random-conv or a plugin's. Default: the one a stats .npz --ref was made with, else inception."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="pt_inception-2015-12-05-6726825d.pth (or env GENVAE_INCEPTION_WEIGHTS)."),
    feature_weights: Optional[Path] = typer.Option(None, "--feature-weights", help="Weights of a non-Inception extractor (classifier: the folder from 'genvae eval train-classifier')."),
    resize: Optional[str] = typer.Option(None, "--resize", help="tf1-bilinear (torch-fidelity) or pil-bicubic (clean-fid)."),
    batch_size: int = typer.Option(200, "--batch-size", help="Images per batch."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated samples."),
) -> None:
    """FID, KID and precision / recall of generated images; appended to RUN/metrics/fid.jsonl."""
    from genvae.core.run import load_run
    from genvae.plugins.metrics.fid import evaluate_fid, is_stats_file

    results = evaluate_fid(load_run(run), ref, num_samples=num_samples, features=features, inception_weights=inception_weights,
                           resize=resize, batch_size=batch_size, seed=seed, feature_weights=feature_weights)
    _print(results)
    if not is_stats_file(ref):  # the data's statistics were computed (or read back) for this run
        console.print(f"note: the reference statistics of {ref} are in {results['ref']}; give that file as --ref to other runs "
                      "to skip computing them again (or make them once: genvae eval fid-ref)", highlight=False, soft_wrap=True)


@eval_app.command("fid-ref")
@user_errors
def fid_ref(
    data: str = typer.Argument(..., metavar="DATA", help="Dataset name (e.g. fashion-mnist) or an image folder."),
    out: Path = typer.Option(..., "--out", help="Where to write the statistics (.npz)."),
    split: str = typer.Option("train", "--split", help="train or test (the paper: train)."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", help="Images to use (default: all)."),
    features: str = typer.Option("inception", "--features", help="Feature extractor: inception, classifier, random-conv or a plugin's."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="Inception weights file."),
    feature_weights: Optional[Path] = typer.Option(None, "--feature-weights", help="Weights of a non-Inception extractor (classifier: its folder)."),
    resize: Optional[str] = typer.Option(None, "--resize", help="tf1-bilinear or pil-bicubic."),
    data_options: list[str] = typer.Option([], "--data-option", help="Dataset option KEY=VALUE, e.g. root=/data/fmnist."),
) -> None:
    """Reference statistics of real images, computed once and reused by 'genvae eval fid --ref'."""
    from genvae.plugins.metrics.fid import compute_reference_stats

    stats = compute_reference_stats(data, out, features=features, inception_weights=inception_weights, resize=resize,
                                    num_samples=num_samples, split=split, data_options=_key_values(data_options), feature_weights=feature_weights)
    console.print(f"wrote {out} ({stats.get('n', '?')} images)", soft_wrap=True)


@eval_app.command("fid-stats")
@user_errors
def fid_stats(
    a: Path = typer.Argument(..., metavar="A.npz", help="Statistics from 'genvae eval fid-ref'."),
    b: Path = typer.Argument(..., metavar="B.npz", help="Statistics of the same features (e.g. the other split)."),
) -> None:
    """FID (and KID) between two statistics files: e.g. the test split against the train split,
    the score real images get, beside which a model's FID is read."""
    from genvae.plugins.metrics.fid import stats_distance

    _print(stats_distance(a, b))


@eval_app.command("train-classifier")
@user_errors
def train_classifier(
    data: str = typer.Argument(..., metavar="DATA", help="A labelled image dataset (e.g. fashion-mnist) or name:key=value,..."),
    out: Path = typer.Option(..., "--out", help="Folder to write the classifier to (model.safetensors + config.json)."),
    steps: int = typer.Option(2000, "--steps", help="Training steps."),
    batch_size: int = typer.Option(128, "--batch-size", help="Images per step."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    data_options: list[str] = typer.Option([], "--data-option", help="Dataset option KEY=VALUE, e.g. root=/data/fmnist."),
) -> None:
    """Train the small classifier whose features '--features classifier' uses (FID without Inception)."""
    from genvae.errors import ConfigError
    from genvae.plugins.metrics import classifier
    from genvae.plugins.metrics.fid import open_data

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    source, label = open_data(data, _key_values(data_options))
    info = classifier.train_classifier(source, label, out, steps=steps, batch_size=batch_size, seed=seed, log=console.print)
    if "test_accuracy" in info:
        accuracy = f"test accuracy {info['test_accuracy']:.4f}"
    else:
        accuracy = f"accuracy {info['train_accuracy']:.4f} on its training images ({label} has no held-out split)"
    console.print(f"wrote {out}: {accuracy} after {steps} steps ({info['seconds']} s)", soft_wrap=True)


@eval_app.command("ood")
@user_errors
def ood(
    run: Path = typer.Argument(..., metavar="RUN", help="A run trained on images."),
    in_data: Optional[str] = typer.Option(None, "--in", help="In-distribution dataset (default: the run's)."),
    out_data: str = typer.Option(..., "--out", "--ood", help="Out-of-distribution dataset (--ood is the same option)."),
    score: str = typer.Option("elbo", "--score", help="elbo or iwae."),
    samples: int = typer.Option(5, "--samples", help="Importance samples M for iwae (the paper: 5)."),
    n: Optional[int] = typer.Option(None, "--num-images", "-n", help="Images per set (default: whole test splits)."),
) -> None:
    """Likelihood-based OOD detection (Section 6.5): AUROC and score histograms."""
    from genvae.core.run import load_run
    from genvae.plugins.metrics.ood import evaluate_ood

    _print(evaluate_ood(load_run(run), in_data, out_data, score=score, samples=samples, n=n))


@eval_app.command("likelihood")
@user_errors
def likelihood(
    run: Path = RUN_DIR,
    data: Optional[str] = EVAL_DATA,
    split: str = SPLIT,
    samples: int = typer.Option(100, "--samples", help="Importance samples M per image."),
    n: Optional[int] = typer.Option(None, "--num-images", "-n", help="Images (default: the whole split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws z ~ q(z|x)."),
) -> None:
    """Held-out log-likelihood: ELBO and IWAE bound per image (nats) and bits per dimension;
    appended to RUN/metrics/likelihood.jsonl."""
    from genvae.core.run import load_run
    from genvae.plugins.metrics.likelihood import evaluate_likelihood

    _print(evaluate_likelihood(load_run(run), data, split, n=n, samples=samples, seed=seed))


@eval_app.command("latents")
@user_errors
def latents(
    run: Path = RUN_DIR,
    data: Optional[str] = EVAL_DATA,
    split: str = SPLIT,
    n: int = typer.Option(2000, "--num-images", "-n", help="Images encoded."),
    seed: int = typer.Option(0, "--seed", help="Seed of the images chosen."),
) -> None:
    """Active latent dimensions and KL per image (per latent group); appended to
    RUN/metrics/latents.jsonl with RUN/metrics/latents.png ('genvae encode' also saves the codes)."""
    from genvae.core.run import load_run
    from genvae.plugins.metrics.latents import evaluate_latents

    _print(evaluate_latents(load_run(run), data, split, n=n, seed=seed))


@eval_app.command("translation")
@user_errors
def translation(
    run: Path = typer.Argument(..., metavar="RUN", help="A class / content run (arch lord) on shapes3d-synthetic."),
    pairs: int = typer.Option(256, "--pairs", help="Image pairs (A, B) translated and scored."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pairs (the bench's seed gives its numbers)."),
    lpips: Optional[bool] = typer.Option(
        None, "--lpips/--no-lpips", help="LPIPS too (default: when VGG16 and LPIPS weights are found; --lpips requires them)."
    ),
) -> None:
    """Content transfer (Section 6.4) scored against the true rendering, KL per latent group, and
    the translation grid; appended to RUN/metrics/translation.jsonl."""
    from genvae.core.run import load_run
    from genvae.errors import ConfigError
    from genvae.plugins.metrics.translation import evaluate_translation

    if pairs <= 0:
        raise ConfigError(f"--pairs must be positive, got {pairs}")
    _print(evaluate_translation(load_run(run), seed=seed, n_pairs=pairs, lpips=lpips))


@eval_app.command("metric")
@user_errors
def metric(
    name: str = typer.Argument(..., metavar="NAME", help="Any registered metric plugin (see 'genvae plugins list')."),
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory."),
    seed: int = typer.Option(0, "--seed", help="Seed of the evaluation's sampling."),
    options: list[str] = typer.Option([], "--option", help="Metric option KEY=VALUE (repeatable)."),
) -> None:
    """Evaluate a run with any metric plugin, passing options through."""
    from genvae.api import evaluate
    from genvae.core.plugins import get_plugins

    get_plugins().metrics.get(name)  # an unknown metric before the run is loaded
    _print(evaluate.__wrapped__(run, name, seed=seed, **_key_values(options)))  # without the API's Python wording


def _key_values(texts: list[str]) -> dict[str, Any]:
    from genvae.core.config import parse_key_value

    return dict(parse_key_value(text) for text in texts)
