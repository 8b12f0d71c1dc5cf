"""Where a trained 2-D model's introspective game settled: the KL the encoder gives real data,
reconstructions and prior samples, the share of fakes below IntroVAE's margin m, the posterior's
width and the reconstruction error (docs/results.md, "Where IntroVAE's game settles").

    python benchmarks/toy2d_kl_levels.py docs/results/table2/paper/cells/8gaussians-{vae,intro,soft-intro}

Each argument is a model directory with encoder/ and decoder/: a run, or a bench cell (its seed 0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from genvae.core.losses import kl_standard_normal, reparameterize
from genvae.core.plugins import get_plugins
from genvae.core.run import load_component


def margin_of(model_dir: Path) -> float | None:
    """IntroVAE's m from a run's config.json or a bench cell's result.json (None for other objectives)."""
    run, cell = model_dir / "config.json", model_dir / "result.json"
    if run.is_file():
        objective = json.loads(run.read_text())["objective"]
    elif cell.is_file():
        objective = json.loads(cell.read_text())["members"][0]["objective"]
    else:
        return None
    return objective.get("m") if objective.get("name") == "intro" else None


def kl_levels(model_dir: Path, dataset: str, n: int = 5000, seed: int = 0) -> dict[str, float]:
    encoder, decoder = load_component(model_dir / "encoder"), load_component(model_dir / "decoder")
    x = get_plugins().datasets.get(dataset)().sample(n, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mu, logvar = encoder(x)
        z = reparameterize(mu, logvar, lambda t: torch.randn(t.shape, generator=g))
        x_rec, x_fake = decoder(z), decoder(torch.randn(mu.shape, generator=g))
        kl_real = kl_standard_normal(mu, logvar)
        kl_rec, kl_fake = (kl_standard_normal(*encoder(x_f)) for x_f in (x_rec, x_fake))
    out = {
        "kl_real": kl_real.mean().item(),
        "kl_rec": kl_rec.mean().item(),
        "kl_fake": kl_fake.mean().item(),
        "posterior_std": (0.5 * logvar).exp().mean().item(),
        "rec_error": (x - x_rec).pow(2).sum(1).mean().item(),  # squared error per point, z ~ q(z|x)
    }
    m = margin_of(model_dir)
    if m is not None:
        out["m"] = m
        out["fakes_below_m"] = torch.cat([kl_rec, kl_fake]).lt(m).float().mean().item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", default="8gaussians")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for model_dir in args.models:
        levels = kl_levels(model_dir, args.data)
        print(f"{model_dir.name}: " + ", ".join(f"{k} {v:.3g}" for k, v in levels.items()))


if __name__ == "__main__":
    main()
