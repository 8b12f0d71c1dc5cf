"""Member-steps/s of batched training (genvae.batched) vs R sequential single runs, same process.

    .venv/bin/python benchmarks/batched_throughput.py --objective soft-intro --members 1 5 15 20 --steps 10

Also prints the implied wall time of the paper's Table 2 (60 runs x 30,000 steps) at that rate.
"""

from __future__ import annotations

import argparse
import time

import torch

from genvae.batched import BatchedTrainer, member_configs, reference_single_run

TABLE2_MEMBER_STEPS = 60 * 30_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objective", default="soft-intro")
    ap.add_argument("--data", default="8gaussians")
    ap.add_argument("--members", type=int, nargs="+", default=[1, 5, 15, 20])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement (after 2 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--single-steps", type=int, default=0, help="steps of the sequential single-run baseline (0: --steps)")
    args = ap.parse_args()
    common = dict(train={"batch_size": args.batch_size}, arch={"hidden": args.hidden})
    ov = [{"num_vae": 0}] if args.objective != "vae" else None
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, objective {args.objective}, batch {args.batch_size}, hidden {args.hidden}")

    n_single = args.single_steps or args.steps

    def single_rate() -> float:
        cfgs, data = member_configs(args.objective, args.data, seeds=[0], overrides=ov, **common)
        t = time.perf_counter()
        reference_single_run(cfgs[0], data, n_single)
        return n_single / (time.perf_counter() - t)  # includes model construction: slightly pessimistic

    single_rate()  # warm-up
    for r in args.members:
        single = single_rate()  # measured right before the batched run: the machine may be shared
        cfgs, data = member_configs(args.objective, args.data, seeds=list(range(r)), overrides=ov, **common)
        bt = BatchedTrainer(cfgs, data)
        bt.fit(2)
        t = time.perf_counter()
        bt.fit(2 + args.steps)
        dt = time.perf_counter() - t
        rate = r * args.steps / dt
        print(
            f"R={r:3d}: single {single:5.2f} steps/s | batched {args.steps / dt:6.2f} steps/s = {rate:7.2f} member-steps/s; "
            f"ratio vs sequential: {rate / single:5.2f}x; Table 2 (1.8M member-steps) at this rate: {TABLE2_MEMBER_STEPS / rate / 3600:.1f} h",
            flush=True,
        )

if __name__ == "__main__":
    main()
