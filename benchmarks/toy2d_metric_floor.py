"""The KL / JSD a perfect generator scores on each 2-D dataset (Table 2's metrics).

Further draws of the data distribution are scored against the evaluation's real samples, as a
model's samples would be, for several sample counts: at the paper's 5,000 samples in 100×100
bins the histograms' sampling noise sets a floor far above 0.

    .venv/bin/python benchmarks/toy2d_metric_floor.py --samples 5000 20000

The last two rows ask whether how the real rings are drawn matters: the authors' sampler picks its
evaluation points *with* replacement from the evenly spaced ring points (genvae's takes each once);
each real set (a new one per draw, both ways) is scored against a new genvae draw.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from genvae.bench2d import DATASETS, PAPER_TABLE2
from genvae.plugins.datasets.toy2d import Toy2D, ring_points
from genvae.plugins.metrics.toy2d import FLOOR_SEED_OFFSET, real_samples, sample_divergences, sampling_floor


def rings_with_replacement(n: int, g: torch.Generator) -> np.ndarray:
    """Rings as genvae draws them, but the n evenly spaced points picked n times with replacement."""
    x = ring_points(n)[torch.randint(0, n, (n,), generator=g)]
    return (x + 0.08 * torch.randn(x.shape, generator=g)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--draws", type=int, default=5)
    args = ap.parse_args()
    print("| dataset | samples | KL | JSD (authors') | JSD (textbook) | paper's best KL / JSD |")
    print("|---|---|---|---|---|---|")
    for name in DATASETS:
        data = Toy2D(name)
        paper = PAPER_TABLE2[name]
        best = f"{min(v[0] for v in paper['kl'].values()):.2f} / {min(v[0] for v in paper['jsd'].values()):.2f}"
        for n in args.samples:
            f = sampling_floor(data, data.plot_scale, num_samples=n, draws=args.draws)
            cells = " | ".join(f"{f[k][0]:.2f} ± {f[k][1]:.2f}" for k in ("kl", "jsd", "jsd_textbook"))
            print(f"| {name} | {n:,} | {cells} | {best if n == 5000 else ''} |")
    rings = Toy2D("rings")
    samplers = {"each once (genvae)": lambda n, k: real_samples(rings, n, k),
                "with replacement (authors')": lambda n, k: rings_with_replacement(n, torch.Generator().manual_seed(k))}  # fmt: skip
    for n in args.samples:
        for label, draw_real in samplers.items():  # a new real set per draw, each against a new genvae draw
            scores = [sample_divergences(draw_real(n, k), real_samples(rings, n, FLOOR_SEED_OFFSET + 100 + k), rings.plot_scale) for k in range(args.draws)]
            cells = " | ".join(f"{np.mean([s[k] for s in scores]):.2f} ± {np.std([s[k] for s in scores]):.2f}" for k in ("kl", "jsd", "jsd_textbook"))
            print(f"| rings, real points {label} | {n:,} | {cells} |  |")


if __name__ == "__main__":
    main()
