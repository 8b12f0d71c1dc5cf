"""``genvae bench translation``: unsupervised content transfer, Soft-IntroVAE vs VAE, both with
LORD's two-encoder architecture, on ``shapes3d-synthetic`` (paper Section 6.4, Table 4, on a
small procedural stand-in for Cars3D that runs on a CPU).

Both models use the dataset's recommended settings, the paper's Cars3D hyperparameters
(Appendix 9.3): β_kl = 1 for both groups, β_rec = 0.5, and for Soft-IntroVAE
β_neg = {content: 2048, class: 1024}; MSE replaces the VGG perceptual loss (no pretrained weights
offline). The CPU budget sets a small network (``TINY_ARCH``), 32x32 images, batch 16 and a few
hundred steps per model; every choice can be overridden with ``overrides`` (``--set`` strings).

Reported per model: the content-transfer MSE against the true rendering (and its baselines, see
:func:`genvae.translate.content_transfer_error`), and the KL of each latent group on held-out
images at the end (posterior-collapse check: the paper's Appendix 9.5 says a VAE's KL vanishes on
this architecture while Soft-IntroVAE's does not). Writes ``translation.md``, ``results.json`` and
``translation_<objective>.png`` (class from the left column, content from the top row).
Run again with the same ``out_dir`` after a crash: each model continues from its checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from genvae.core.bench_run import BENCH_CHECKPOINT_EVERY, continue_or_start, left_out_note, resume_note, resumed_at, settings_for
from genvae.core.config import merge_user
from genvae.core.run import load_run, resolve
from genvae.core.trainer import train
from genvae.plugins.metrics.translation import COLLAPSE_NATS, evaluate_translation, save_translation_grid

OBJECTIVES = ("soft-intro", "vae")
TINY_ARCH = {"class_dim": 32, "content_dim": 16, "channels": [16, 32, 64, 64], "fc_dim": 64, "adain_dim": 32}


def bench_overrides(steps: int, seed: int, resolution: int, batch_size: int, arch: dict[str, Any]) -> list[str]:
    sets = [
        f"data.resolution={resolution}",
        f"train.steps={steps}",
        f"train.seed={seed}",
        f"train.batch_size={batch_size}",
        f"train.log_every={max(1, min(50, steps // 10))}",
        f"train.checkpoint_every={BENCH_CHECKPOINT_EVERY}",
    ]
    return sets + [f"arch.{k}={json.dumps(v)}" for k, v in arch.items()]


def run_bench_translation(
    out_dir: str | Path,
    steps: int = 300,
    seed: int = 0,
    *,
    resolution: int = 32,
    batch_size: int = 16,
    arch: dict[str, Any] | None = None,
    objectives: Sequence[str] = OBJECTIVES,
    overrides: Sequence[str] = (),
    n_pairs: int = 256,
    threads: int | None = 1,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train each objective on shapes3d-synthetic and compare content transfer; see the module doc.

    ``threads``: torch CPU threads while benchmarking (1 is much faster than 2 on a busy 2-core
    machine; ``None`` leaves torch's setting). ``log`` gets a line for each objective that lacks
    one of the ``objective.*`` options (its runs go without). Returns the results also written to
    results.json.
    """
    base = bench_overrides(steps, seed, resolution, batch_size, arch or TINY_ARCH)
    kept = {o: settings_for(o, overrides, objectives) for o in objectives}
    resolved = {  # every objective's settings, before any training
        o: resolve(merge_user(None, base + kept[o], {"objective.name": o, "arch.name": "lord", "data.name": "shapes3d-synthetic"}))
        for o in objectives
    }
    for o in objectives:
        if log and (note := left_out_note("translation", o, overrides, kept[o])):
            log(note)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    results: dict[str, Any] = {"steps": steps, "seed": seed, "resolution": resolution, "batch_size": batch_size, "models": {}}
    try:
        for objective in objectives:
            cfg, data = resolved[objective]
            run_dir = out / "runs" / objective
            resume = continue_or_start(run_dir, cfg.to_dict())
            start = time.perf_counter()
            trained = train(cfg, data, run_dir, progress=progress, resume=resume)
            seconds = time.perf_counter() - start
            run = load_run(run_dir)
            scores = evaluate_translation(run, seed=seed, n_pairs=n_pairs, figure=False)  # = genvae eval translation, recorded in RUN/metrics
            save_translation_grid(run, out / f"translation_{objective}.png", seed)
            results["models"][objective] = {
                **{k: scores[k] for k in scores if k not in ("objective", "run", "seed", "n_pairs", "seconds")},
                "train_seconds": seconds,
                "resumed_at": resumed_at(trained, resume),
                "last_logs": trained.last_logs,
                "config": cfg.to_dict(),
            }
    finally:
        torch.set_num_threads(old_threads)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "translation.md").write_text(markdown_table(results))
    return results


def number(value: float | None) -> str:
    """``value`` to two decimals; "—" when it is missing or NaN (not measurable with these pairs)."""
    return "—" if value is None or math.isnan(value) else f"{value:.2f}"


def pose_cell(pose_r2: dict[str, dict[str, float]] | None) -> str:
    """``class / content`` R² of the rotation, then of the position: "0.99 / 0.05; 0.95 / 0.94"."""
    if not pose_r2:
        return "—"
    return "; ".join(f"{pose_r2['class'][f]:.2f} / {pose_r2['content'][f]:.2f}" for f in ("rotation", "position"))


def markdown_table(results: dict[str, Any]) -> str:
    with_lpips = any("lpips" in r for r in results["models"].values())  # only where its weights were found
    lines = [
        "# Unsupervised content transfer on shapes3d-synthetic (LORD architecture)",
        "",
        f"{results['resolution']}x{results['resolution']} images, {results['steps']} steps of batch {results['batch_size']} per model, "
        f"seed {results['seed']}. Content-transfer MSE: per-pixel MSE of D(class of A, content of B) against the true "
        "rendering of A's class in B's pose (lower is better). Baselines: copying B (ignores the class), copying A "
        "(ignores the content), the mean image. Shape-from-content MSE: the translation against A's colour pattern on "
        "B's shape in B's pose (lower than the transfer MSE: the model keeps the shape in the content code). "
        "Aligned MSE: the transfer MSE after the best constant rotation per pair of identities (every 15°), since which "
        "angles of two different identities correspond is the renderer's convention, not visible in unlabelled data "
        "(unless data.marker is on). Rotation from B / A: the share of translations whose best-fitting rotation is within "
        "15° of B's (carried by the content code) or of A's (kept by the class code); about 1/8 each by chance. Follows B / A: "
        "how closely that rotation follows B's (A's) up to a constant per pair of identities, 1 at best, about "
        "0.89/sqrt(translations per pair of identities) by chance (—: fewer than 4 translations per pair of identities). Pose R²: how much of the true rotation / "
        "position each code holds (held-out R² of a linear map from the code, per identity; 1: all of it, 0: none); "
        "a class/content split has the pose in the content code, not in the class code. "
        "KL per group on held-out images; "
        f"a group below {COLLAPSE_NATS} nats counts as collapsed."
        + (" LPIPS (VGG16, v0.1): the paper's Table 4 distance." if with_lpips else ""),
        "",
        "| model | transfer MSE | aligned MSE | rotation from B / A (follows B / A) | pose R² in class / content: rotation; position | shape-from-content MSE | recon MSE | copy-B MSE | copy-A MSE | mean-image MSE | "
        + ("transfer LPIPS | copy-B LPIPS | " if with_lpips else "") + "KL class | KL content | collapsed | train s |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if with_lpips else "") + "---|---|---|---|",
    ]
    names = {"soft-intro": "Soft-IntroVAE-LORD", "vae": "VAE-LORD", "intro": "IntroVAE-LORD"}
    for objective, r in results["models"].items():
        lines.append(
            f"| {names.get(objective, objective)} | {r['mse']:.4f} | {r.get('mse_aligned', float('nan')):.4f} | "
            f"{r.get('rotation_from_content', float('nan')):.0%} / {r.get('rotation_from_class', float('nan')):.0%} "
            f"({number(r.get('rotation_follows_content'))} / {number(r.get('rotation_follows_class'))}) | {pose_cell(r.get('pose_r2'))} | {r.get('mse_shape_from_content', float('nan')):.4f} | {r['mse_reconstruction']:.4f} | {r['mse_copy_content']:.4f} | "
            f"{r['mse_copy_class']:.4f} | {r['mse_mean_image']:.4f} | "
            + (f"{r.get('lpips', float('nan')):.4f} | {r.get('lpips_copy_content', float('nan')):.4f} | " if with_lpips else "")
            + f"{r['kl'].get('class', float('nan')):.2f} | "
            f"{r['kl'].get('content', float('nan')):.2f} | {', '.join(r['collapsed_groups']) or 'none'} | {r['train_seconds']:.0f}"
            + (f" ({note})" if (note := resume_note(r.get("resumed_at"), results["steps"])) else "") + " |"
        )
    lines += ["", "Grids: " + ", ".join(f"`translation_{o}.png`" for o in results["models"]) + " (class: left column, content: top row).", ""]
    return "\n".join(lines)


__all__ = ["run_bench_translation", "markdown_table", "TINY_ARCH"]
