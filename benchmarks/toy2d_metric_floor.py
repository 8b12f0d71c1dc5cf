"""The KL / JSD a perfect generator scores on each 2-D dataset (Table 2's metrics).

Further draws of the data distribution are scored against the evaluation's real samples, as a
model's samples would be, for several sample counts: at the paper's 5,000 samples in 100×100
bins the histograms' sampling noise sets a floor far above 0.

    .venv/bin/python benchmarks/toy2d_metric_floor.py --samples 5000 20000
"""

from __future__ import annotations

import argparse

from genvae.bench2d import DATASETS, PAPER_TABLE2
from genvae.plugins.datasets.toy2d import Toy2D
from genvae.plugins.metrics.toy2d import sampling_floor


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


if __name__ == "__main__":
    main()
