"""The paper's Appendix 9.5 / Figure 21: VAE and Soft-IntroVAE with β_kl = 1, β_rec = 0.5
(β_neg = 5 for Soft-IntroVAE) on the 8 Gaussians; the VAE's KL term of real data vanishes
(posterior collapse), Soft-IntroVAE's does not. Writes the samples and the KL over training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from genvae.batched import resolve_device
from genvae.bench2d import LABELS, Log, as_seed_list, cell_state, first_member, train_batched
from genvae.core.config import write_json
from genvae.plugins.metrics.toy2d import generated_samples



COLLAPSE_SETTINGS = {
    "vae": {"beta_kl": 1.0, "beta_rec": 0.5},
    "soft-intro": {"beta_kl": 1.0, "beta_rec": 0.5, "beta_neg": 5.0},
}


def run_collapse(
    out_dir: str | Path,
    steps: int = 30_000,
    seeds: int | Sequence[int] = 1,
    dataset: str = "8gaussians",
    train: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | None = None,
    soft_intro_overrides: Mapping[str, Any] | None = None,
    log: Log | None = print,
    device: str | None = None,
    compile: bool = False,
) -> dict[str, Any]:
    """VAE vs Soft-IntroVAE with β_kl = 1, β_rec = 0.5 (β_neg = 5): writes collapse.json / .png."""
    resolve_device(device)  # a GPU asked for but absent stops here, before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_list = as_seed_list(seeds)
    result: dict[str, Any] = {"dataset": dataset, "steps": steps, "seeds": seed_list, "models": {}}
    samples = {}
    for o, hyperparameters in COLLAPSE_SETTINGS.items():
        ov = {**hyperparameters, **((soft_intro_overrides or {}) if o == "soft-intro" else {})}
        # the final state stays in cells/ (it holds the KL history): a rerun only redraws
        settings = {"dataset": dataset, "steps": steps, "seeds": seed_list, "train": dict(train or {}), "arch": dict(arch or {}), "objective": ov,
                    "resolved": first_member(o, dataset, ov, steps, train, arch)[0]}  # fmt: skip
        state = cell_state(out / "cells" / f"collapse-{o}", settings)
        bt = train_batched(o, dataset, seed_list, steps, overrides=[ov], train=train, arch=arch, log=log, device=device, checkpoint=state,
                           compile=compile)
        kl = torch.stack(bt.history.logs["kl"]).T  # (R, steps): KL(q(z|x)‖p(z)) of real data per step
        enc, dec = bt.member_modules(0)
        samples[o] = (generated_samples(dec, sum(enc.latent_groups.values()), 2000, 1), float(getattr(bt.data, "plot_scale", 2.0)))
        result["models"][o] = {
            "hyperparameters": ov,
            "kl_per_step": kl.tolist(),
            "final_kl": [float(v[-max(1, len(v) // 20) :].mean()) for v in kl],
        }
        if log:
            log(f"[collapse] {LABELS[o]}: final KL of real data {', '.join(f'{v:.3g}' for v in result['models'][o]['final_kl'])} nats (per seed)")
    write_json(out / "collapse.json", result)
    _collapse_plot(result, samples, out / "collapse.png")
    return result


def _collapse_plot(result: Mapping[str, Any], samples: Mapping[str, Any], path: Path) -> Path:
    from genvae.viz.points import draw_scatter, plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.9))
    colors = {"vae": "tab:orange", "soft-intro": "tab:green"}
    for ax, o in zip(axes[:2], ("vae", "soft-intro")):
        pts, scale = samples[o]
        draw_scatter(ax, pts, scale, colors[o], f"{LABELS[o]} samples")
    ax = axes[2]
    for o in ("vae", "soft-intro"):
        kl = np.asarray(result["models"][o]["kl_per_step"])
        k = max(1, kl.shape[1] // 200)
        smooth = np.convolve(kl.mean(0), np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(smooth)) + k - 1, smooth, color=colors[o], label=LABELS[o])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("KL(q(z|x) ‖ p(z))")
    ax.set_title("KL term of real data during training")
    ax.legend()
    fig.suptitle(f"Posterior collapse, {result['dataset']}: β_kl=1, β_rec=0.5 (β_neg=5 for Soft-IntroVAE)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
