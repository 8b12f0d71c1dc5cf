"""IntroVAE on 8 Gaussians with or without the plain-VAE warm-up, several seeds as one batched
model; prints each seed's KL, JSD and gnELBO (docs/results.md, "IntroVAE on 8 Gaussians").

    python benchmarks/intro_warmup_seeds.py --num-vae 0    --seeds 1 2
    python benchmarks/intro_warmup_seeds.py --num-vae 2000 --seeds 1 2
    python benchmarks/intro_warmup_seeds.py --num-vae 2000 --seeds 0 1 2 --set beta_neg=2.0 --set margin=batch
    python benchmarks/intro_warmup_seeds.py --num-vae 2000 --seeds 0 1 2 --arch depth=3 --set beta_kl=0.25 --set beta_neg=0.5 --set m=2
"""

from __future__ import annotations

import argparse
import json

import torch

from genvae.bench2d import evaluate_members, train_batched
from genvae.core.config import parse_key_value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-vae", type=int, required=True, help="plain-VAE warm-up steps")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another objective setting, e.g. beta_neg=2.0")
    ap.add_argument("--arch", action="append", default=[], metavar="KEY=VALUE", help="an architecture setting, e.g. depth=3 (the network of the runs before session 20)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {"num_vae": args.num_vae, **dict(parse_key_value(text) for text in args.set)}
    bt = train_batched("intro", "8gaussians", args.seeds, args.steps, overrides=[overrides], arch=dict(parse_key_value(text) for text in args.arch), log=print)
    rows = [{k: m[k] for k in ("seed", "kl", "jsd", "gnelbo")} for m in evaluate_members(bt)]
    print(json.dumps({"objective": overrides, "arch": args.arch, "steps": args.steps, "members": rows, "train_seconds": round(bt.seconds, 1)}))


if __name__ == "__main__":
    main()
