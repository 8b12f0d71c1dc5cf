"""Progressive growing of the style-based Soft-IntroVAE on small real sets, on the CPU.

Trains 4x4 -> 8x8 -> 16x16 -> 32x32 on the 32 CelebA faces of ../shared/data/celeba-32 and on
the CIFAR-10 subset of ../shared/data/cifar10-partial, prints the throughput of every level
(images per second, one process) and the eval reconstruction error against the mean image's,
and copies each level's sample / reconstruction grids to --out/<set>/ (runs/style-growing; the
docs' figures were made with --out docs/results/style). A benchmark, not a test: minutes per set.

    python benchmarks/style_growing.py [--sets faces cifar] [--images-per-level 4800] [--final-steps 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch

from genvae.core.config import merge_user
from genvae.core.run import resolve
from genvae.core.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

ARCH = ["arch.z_dim=128", "arch.w_dim=128", "arch.start_channels=16", "arch.max_channels=128", "arch.mapping_layers=4"]
SETS = {
    # the authors' face weights (their beta_rec 0.1 on [-1, 1] images = 0.4 on genvae's [0, 1];
    # beta_kl 0.2) with the paper's beta_neg for 32x32 images (CIFAR-10: 256): the face configs'
    # 2048 / 1024 go with s = 1 / (3 x 256 x 256), and at s = 1 / (3 x 32 x 32) they would make the
    # expELBO of every fake 0. The folder dataset has no held-out split, so the reconstructions
    # are of training faces.
    "faces": (
        {"data.name": "folder"},
        [f"data.path={SHARED / 'celeba-32'}", "data.resolution=32", "data.hflip=true",
         "objective.beta_rec=0.4", "objective.beta_kl=0.2", "objective.beta_neg=256.0"],
    ),
    # the paper's CIFAR-10 weights (beta_rec = beta_kl = 1, beta_neg 256); held-out test reconstructions
    "cifar": (
        {"data.name": "cifar10"},
        [f"data.root={SHARED / 'cifar10-partial'}", "objective.beta_rec=1.0", "objective.beta_kl=1.0", "objective.beta_neg=256.0"],
    ),
}


def run(name: str, images_per_level: int, final_steps: int, out_root: Path, run_root: Path) -> dict[str, dict[str, float]]:
    names, settings = SETS[name]
    batches = [32, 32, 16, 16]
    growth_steps = sum(-(-images_per_level // b) for b in batches[:3])
    steps = growth_steps + final_steps
    user = merge_user(None, ARCH + settings + [
        "grow.start_resolution=4", f"grow.images_per_level={images_per_level}", f"grow.batch_sizes={batches}",
        "optim.lr=0.0015", "optim.betas=[0.0, 0.99]", "objective.num_vae=100",
        f"train.steps={steps}", "train.batch_size=16", "train.log_every=10", "train.checkpoint_every=0",
    ], {"objective.name": "soft-intro", "arch.name": "style", **names})
    cfg, data = resolve(user)
    run_dir = run_root / name
    shutil.rmtree(run_dir, ignore_errors=True)
    marks: dict[int, list[tuple[float, int]]] = defaultdict(list)  # resolution -> (time, step)

    def on_log(record: dict[str, float]) -> None:
        marks[int(record["resolution"])].append((time.perf_counter(), int(record["step"])))

    start = time.perf_counter()
    train(cfg, data, run_dir, progress=False, on_log=on_log)
    total = time.perf_counter() - start
    levels: dict[str, dict[str, float]] = {}
    for res, points in sorted(marks.items()):
        batch = batches[{4: 0, 8: 1, 16: 2, 32: 3}[res]]
        if len(points) > 1:
            (t0, s0), (t1, s1) = points[0], points[-1]
            levels[f"{res}x{res}"] = {"steps": s1 - s0, "images_per_s": (s1 - s0) * batch / (t1 - t0)}
    out = out_root / name
    shutil.rmtree(out, ignore_errors=True)
    for level_dir in sorted((run_dir / "levels").iterdir()):
        for png in level_dir.glob("*.png"):
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(png, out / f"{level_dir.name}_{png.name}")
    shutil.copy(run_dir / "losses.png", out / "losses.png")
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    error, mean_image = reconstruction_error(run_dir)
    print(f"{name}: {steps} steps in {total:.0f} s; final rec {last['rec']:.1f}, kl {last['kl']:.1f}, kl_fake {last.get('kl_fake', float('nan')):.1f}; "
          f"eval reconstruction error {error:.0f} vs the mean image's {mean_image:.0f}")
    for level, v in levels.items():
        print(f"  {level}: {v['steps']} steps, {v['images_per_s']:.1f} images/s")
    return levels


def reconstruction_error(run_dir: Path) -> tuple[float, float]:
    """Squared error per image of the reconstruction from the posterior mean (eval mode) of the
    32 images of the reconstruction grid, and that of predicting each by their mean image."""
    from genvae.core.run import load_run

    loaded = load_run(run_dir)
    x = loaded.data.test_batch(32, seed=0).x
    with torch.no_grad():
        mu, _ = loaded.models.encode(x)
        rec = loaded.models.decode(mu)
    return float((rec - x).pow(2).flatten(1).sum(1).mean()), float((x - x.mean(0)).pow(2).flatten(1).sum(1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--images-per-level", type=int, default=4800)
    parser.add_argument("--final-steps", type=int, default=300, help="steps at 32x32 after it has faded in")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "style-growing", help="where the grids go (docs: docs/results/style)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-style")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the real data in {SHARED}")
    torch.set_num_threads(1)
    for name in args.sets:
        run(name, args.images_per_level, args.final_steps, args.out, args.runs)


if __name__ == "__main__":
    main()
