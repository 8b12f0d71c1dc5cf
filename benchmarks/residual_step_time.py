"""Seconds per Soft-IntroVAE training step, residual architecture, CIFAR-10 setting, CPU.

One step = the objective's encoder phase + decoder phase exactly as the trainer runs them
(begin_step, then per phase: requires_grad toggled, phase_loss, backward, Adam step), for
channels (64, 128, 256), z_dim 128, batch 32 of 3x32x32 images. Reports the median over
``--steps`` timed steps after ``--warmup`` untimed ones, and the ratio to the authors' code
(3.3 s/step, measured on the same 2-core CPU machine).

    .venv/bin/python benchmarks/residual_step_time.py [--steps 20] [--warmup 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from genvae.core.interfaces import Batch, Models
from genvae.plugins.architectures.residual import ResidualDecoder, ResidualEncoder
from genvae.plugins.objectives.soft_intro import SoftIntroConfig, SoftIntroVAE

REFERENCE_SECONDS_PER_STEP = 3.3  # authors' Soft-IntroVAE code, same setting, same machine
TARGET_SECONDS_PER_STEP = 2.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    shape = (3, 32, 32)
    encoder = ResidualEncoder(shape, z_dim=128, channels=(64, 128, 256)).train()
    decoder = ResidualDecoder(shape, z_dim=128, channels=(64, 128, 256)).train()
    parts = {"encoder": encoder, "decoder": decoder}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=2e-4) for name, m in parts.items()}
    objective = SoftIntroVAE(SoftIntroConfig(beta_rec=1.0, beta_kl=1.0, beta_neg=256.0))
    models = Models(encoder, decoder, dict(encoder.latent_groups), 3 * 32 * 32, torch.Generator().manual_seed(0))
    data = torch.Generator().manual_seed(1)

    def step(i: int) -> None:
        batch = Batch(torch.rand(args.batch_size, *shape, generator=data))
        ctx = objective.begin_step(batch, models, i)
        for phase in objective.phases_at(i):
            for name, module in parts.items():
                module.requires_grad_(name in phase.trains)
            out = objective.phase_loss(phase, ctx, models)
            for name in phase.trains:
                optimizers[name].zero_grad(set_to_none=True)
            out.loss.backward()
            for name in phase.trains:
                optimizers[name].step()
        for module in parts.values():
            module.requires_grad_(True)

    for i in range(args.warmup):
        step(i)
    times, cpu_times = [], []
    load_before = os.getloadavg()[0]
    for i in range(args.warmup, args.warmup + args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step(i)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    median = statistics.median(times)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, 3x32x32, channels (64,128,256), z 128")
    print(f"median seconds per Soft-IntroVAE step over {args.steps} steps: {median:.3f} (min {min(times):.3f}, max {max(times):.3f})")
    # CPU seconds of this process: with --threads 1 they estimate the wall time on an idle core even
    # when other jobs share the machine (the wall-clock figure then measures the sharing)
    print(f"median CPU seconds per step: {statistics.median(cpu_times):.3f}; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (a load above the core count means other jobs share the CPU)")
    print(f"ratio to the authors' code ({REFERENCE_SECONDS_PER_STEP} s/step): {median / REFERENCE_SECONDS_PER_STEP:.2f}x "
          f"({'within' if median <= TARGET_SECONDS_PER_STEP else 'ABOVE'} the {TARGET_SECONDS_PER_STEP} s target)")


if __name__ == "__main__":
    main()
