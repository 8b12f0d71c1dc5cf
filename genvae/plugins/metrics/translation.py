"""``translation`` metric: how well a class / content model (arch ``lord``) transfers content, on
data that can render its own ground truth (``shapes3d-synthetic``). ``genvae eval translation RUN``
scores any such run the way ``genvae bench translation`` scores its two models (same seeds, so the
same numbers): the content-transfer errors of :func:`genvae.translate.content_transfer_error`,
how much of the true rotation and position each latent group holds (:func:`genvae.translate.pose_probe`,
``pose_r2``), the KL of each latent group on held-out images (a group below ``COLLAPSE_NATS`` carries almost
nothing: posterior collapse), and the translation grid. Appended to ``RUN/metrics/translation.jsonl``.

LPIPS (the paper's Table 4 score) is added when its weights are here (``lpips_vgg``): ``lpips=None``
computes it if it can and says why not otherwise, ``True`` requires it, ``False`` skips it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from genvae.core.checkpoint import append_metrics_record
from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Metric
from genvae.core.losses import kl_per_group

COLLAPSE_NATS = 0.5
RESULTS_FILE = "translation.jsonl"
PAIRS_SEED = 12345  # added to the seed for the scored pairs (the grid and the KLs use their own)
PROBE_SEED = 54321  # added to the seed for the images of the pose probe


@torch.no_grad()
def group_kls(run: Any, n: int = 256, seed: int = 0) -> dict[str, float]:
    """Mean KL(q(z_g|x) ‖ N(0, I)) of each latent group on ``n`` held-out images."""
    x = run.data.test_batch(n, seed=seed).x
    mu, logvar = run.encoder(x)
    return {g: kl.mean().item() for g, kl in kl_per_group(mu, logvar, run.encoder.latent_groups).items()}


def save_translation_grid(run: Any, path: str | Path, seed: int = 0) -> Path:
    """The grid of six held-out class images (left column) by six content images (top row)."""
    from genvae.translate import translation_grid
    from genvae.viz.images import TRANSLATION_CAPTION, save_grid

    test = run.data.test_batch(12, seed=seed + 1)
    return save_grid(translation_grid(run.models, test.x[:6], test.x[6:12]), Path(path), TRANSLATION_CAPTION)


def evaluate_translation(
    run: Any, seed: int = 0, n_pairs: int = 256, figure: bool = True, write: bool = True, lpips: bool | None = None
) -> dict[str, Any]:
    """Score a ``LoadedRun``; ``figure`` writes ``RUN/metrics/translation.png`` (class images down
    the left column, content images along the top), ``write`` appends the result to the jsonl;
    ``lpips``: see the module doc."""
    from genvae.plugins.metrics.lpips_vgg import load_lpips, missing_weights
    from genvae.translate import content_transfer_error, pose_probe

    start = time.perf_counter()
    why_not = missing_weights() if lpips is not False else "not asked for"
    distances = {"lpips": load_lpips()} if lpips or (lpips is None and why_not is None) else {}
    scores = content_transfer_error(run.models, run.data, n_pairs=n_pairs, seed=seed + PAIRS_SEED, distances=distances)
    kls = group_kls(run, seed=seed)
    result: dict[str, Any] = {
        **scores,
        "pose_r2": pose_probe(run.models, run.data, seed=seed + PROBE_SEED),
        "kl": kls,
        "collapsed_groups": [g for g, v in kls.items() if v < COLLAPSE_NATS],
        "objective": run.config.objective["name"],
        "run": str(run.path),
        "step": getattr(run, "step", None),
        "seed": seed,
        "n_pairs": n_pairs,
    }
    if not distances:
        result["lpips_skipped"] = why_not
    if figure:
        result["figure"] = str(save_translation_grid(run, Path(run.path) / "metrics" / "translation.png", seed))
    result["seconds"] = round(time.perf_counter() - start, 2)
    if write:
        append_metrics_record(run.path, RESULTS_FILE, result)
    return result


@hookimpl
def genvae_register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register("translation", Metric(evaluate=evaluate_translation, description="content transfer of a class / content (LORD) run on shapes3d-synthetic (paper Sec. 6.4)"))
