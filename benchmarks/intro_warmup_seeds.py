"""IntroVAE on 8 Gaussians with or without the plain-VAE warm-up, several seeds as one batched
model; prints each seed's KL, JSD and gnELBO (docs/results.md, "IntroVAE on 8 Gaussians").

    python benchmarks/intro_warmup_seeds.py --num-vae 0    --seeds 1 2
    python benchmarks/intro_warmup_seeds.py --num-vae 2000 --seeds 1 2
"""

from __future__ import annotations

import argparse
import json

import torch

from genvae.bench2d import evaluate_members, train_batched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-vae", type=int, required=True, help="plain-VAE warm-up steps")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bt = train_batched("intro", "8gaussians", args.seeds, args.steps, overrides=[{"num_vae": args.num_vae}], log=print)
    rows = [{k: m[k] for k in ("seed", "kl", "jsd", "gnelbo")} for m in evaluate_members(bt)]
    print(json.dumps({"num_vae": args.num_vae, "steps": args.steps, "members": rows, "train_seconds": round(bt.seconds, 1)}))


if __name__ == "__main__":
    main()
