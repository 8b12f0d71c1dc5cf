"""Steps/s of batched training compiled (torch.compile) vs eager, measured alternately in one process.

    .venv/bin/python benchmarks/batched_compile.py --objective soft-intro --members 5 --rounds 3 --steps 20

The 2-D datasets' recommended network and batch (4 hidden layers of 256, batch 512), no warm-up phase. Compile
time is reported separately and excluded from the rates. The two trainers alternate in blocks of
``--steps`` steps so that a shared machine slows both alike; the ratio is compiled / eager. On a
GPU the compiled step replays as CUDA graphs (mode "reduce-overhead").
"""

from __future__ import annotations

import argparse
import time

import torch

from genvae.batched import BatchedTrainer, member_configs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objective", default="soft-intro")
    ap.add_argument("--data", default="2spirals")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ov = [{"num_vae": 0}] if args.objective != "vae" else None
    cfgs, data = member_configs(args.objective, args.data, seeds=list(range(args.members)), overrides=ov)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.objective} on {args.data}, "
          f"{args.members} members, device {args.device}")
    trainers = {name: BatchedTrainer(cfgs, data, device=args.device, compile=name == "compiled") for name in ("eager", "compiled")}
    for name, bt in trainers.items():
        t = time.perf_counter()
        bt.fit(3)
        print(f"{name}: first 3 steps (compilation included) {time.perf_counter() - t:.1f} s", flush=True)
    seconds = {name: 0.0 for name in trainers}
    for _ in range(args.rounds):
        for name, bt in trainers.items():
            t = time.perf_counter()
            bt.fit(bt.step + args.steps)
            if args.device != "cpu":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - t
    rates = {name: args.rounds * args.steps / s for name, s in seconds.items()}
    for name, rate in rates.items():
        print(f"{name:9s} {rate:7.2f} steps/s = {rate * args.members:8.1f} member-steps/s")
    print(f"ratio compiled / eager: {rates['compiled'] / rates['eager']:.2f}x")


if __name__ == "__main__":
    main()
