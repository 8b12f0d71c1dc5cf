"""Soft-IntroVAE training steps per second on 8 Gaussians (batch 512, the paper's MLP).

Measures, in the same process and on the same cores:
- ``genvae``: the Trainer's full step (data, both phases, optimizers, schedulers, logging sums);
- ``reference``: a step written the way the authors' 2-D script does it — per-point Python data
  generation (numpy, one point at a time), every network pass recomputed in both phases, the
  same loss math (see genvae/plugins/objectives/soft_intro.py for the equations).

Prints both, the ratio, and the floor that the step's matrix products set. Usage: python benchmarks/toy2d_steps_per_second.py [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def reference_8gaussians(batch_size: int) -> torch.Tensor:
    """Per-point sampling loop, as the authors' ToyDataset (and FFJORD's sampler) do."""
    scale = 2.0
    centers = [(1, 0), (-1, 0), (0, 1), (0, -1), (1 / np.sqrt(2), 1 / np.sqrt(2)), (1 / np.sqrt(2), -1 / np.sqrt(2)),
               (-1 / np.sqrt(2), 1 / np.sqrt(2)), (-1 / np.sqrt(2), -1 / np.sqrt(2))]
    centers = [(scale * x, scale * y) for x, y in centers]
    dataset = []
    for _ in range(batch_size):
        point = np.random.randn(2) * 0.02
        center = centers[np.random.randint(8)]
        point[0] += center[0]
        point[1] += center[1]
        dataset.append(point)
    return torch.from_numpy(np.array(dataset, dtype="float32") / 1.414)


def mlp(i: int, o: int) -> nn.Sequential:
    """The authors' EncoderSimple / DecoderSimple with n_layers=3: input layer, 3 hidden, output."""
    hidden = [m for _ in range(3) for m in (nn.Linear(256, 256), nn.ReLU())]
    return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), *hidden, nn.Linear(256, o))


def reference_step(enc, dec, opt_e, opt_d, beta_rec=0.2, beta_kl=0.3, beta_neg=0.9, gamma_r=1e-8):
    """One Soft-IntroVAE step structured like the authors' 2-D training loop."""
    scale = 1 / 2
    x = reference_8gaussians(512)
    noise = torch.randn(512, 2)

    def encode(v):
        return enc(v).chunk(2, dim=1)

    def rep(mu, logvar):
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def kl(mu, logvar):
        return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)

    def rec(a, b):
        return F.mse_loss(b, a, reduction="none").sum(1)

    for p in enc.parameters():
        p.requires_grad = True
    for p in dec.parameters():
        p.requires_grad = False
    fake = dec(noise)
    mu, logvar = encode(x)
    z = rep(mu, logvar)
    x_rec = dec(z)
    loss_rec = rec(x, x_rec).mean()
    loss_kl = kl(mu, logvar).mean()
    rmu, rlv = encode(x_rec.detach())
    fmu, flv = encode(fake.detach())
    rr = dec(rep(rmu, rlv))
    rf = dec(rep(fmu, flv))
    e_r = (-2 * scale * (beta_rec * rec(x_rec.detach(), rr) + beta_neg * kl(rmu, rlv))).exp().mean()
    e_f = (-2 * scale * (beta_rec * rec(fake.detach(), rf) + beta_neg * kl(fmu, flv))).exp().mean()
    loss_e = scale * (beta_rec * loss_rec + beta_kl * loss_kl) + 0.25 * (e_r + e_f)
    opt_e.zero_grad()
    loss_e.backward()
    opt_e.step()

    for p in enc.parameters():
        p.requires_grad = False
    for p in dec.parameters():
        p.requires_grad = True
    fake = dec(noise)
    x_rec = dec(z.detach())
    loss_rec = rec(x, x_rec).mean()
    rmu, rlv = encode(x_rec)
    fmu, flv = encode(fake)
    with torch.no_grad():
        rr = dec(rep(rmu, rlv))
        rf = dec(rep(fmu, flv))
    loss_d = scale * (beta_rec * loss_rec + 0.5 * beta_kl * (kl(rmu, rlv).mean() + kl(fmu, flv).mean())
                      + gamma_r * 0.5 * beta_rec * (rec(x_rec, rr).mean() + rec(fake, rf).mean()))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()


def time_loop(step, n: int, warmup: int = 20, block: int = 50) -> float:
    """Steps per second: the median over blocks of `block` steps (one shorter block when n < block)."""
    for _ in range(warmup):
        step()
    block = max(1, min(block, n))
    times = []
    for _ in range(max(1, n // block)):
        start = time.perf_counter()
        for _ in range(block):
            step()
        times.append((time.perf_counter() - start) / block)
    return 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before timing")
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)

    from genvae.core.config import merge_user
    from genvae.core.run import resolve
    from genvae.core.trainer import Trainer

    cfg, data = resolve(merge_user(None, ["objective.num_vae=0", "train.checkpoint_every=0"], {}))
    trainer = Trainer(cfg, data, "/tmp/genvae-bench-unused", progress=False)
    batches = iter(trainer.stream)
    ours = time_loop(lambda: trainer.train_step(trainer.to_device(next(batches))), args.steps, args.warmup)

    enc, dec = mlp(2, 4), mlp(2, 2)
    opt_e, opt_d = torch.optim.Adam(enc.parameters(), 2e-4), torch.optim.Adam(dec.parameters(), 2e-4)
    ref = time_loop(lambda: reference_step(enc, dec, opt_e, opt_d), args.steps, args.warmup)

    print(f"torch threads: {torch.get_num_threads()}")
    print(f"reference (authors' loop structure): {ref:6.1f} steps/s  ({1000 / ref:.1f} ms/step)")
    print(f"genvae Trainer.train_step:           {ours:6.1f} steps/s  ({1000 / ours:.1f} ms/step)")
    print(f"speed-up: {ours / ref:.2f}x")
    # how far from the matrix-product floor: the reference step's FLOPs at this machine's matmul rate
    step_gflop = reference_gflop()
    rate = matmul_gflops()
    print(f"matrix products per step: {step_gflop:.2f} GFLOP; a 512x256x256 product runs at {rate:.0f} GFLOP/s: "
          f"floor {1000 * step_gflop / rate:.1f} ms/step ({rate / step_gflop:.1f} steps/s)")


def reference_gflop() -> float:
    """GFLOP of one reference step (matrix products; torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    enc, dec = mlp(2, 4), mlp(2, 2)
    opt_e, opt_d = torch.optim.Adam(enc.parameters()), torch.optim.Adam(dec.parameters())
    with FlopCounterMode(display=False) as counter:
        reference_step(enc, dec, opt_e, opt_d)
    return counter.get_total_flops() / 1e9


def matmul_gflops(repeats: int = 500) -> float:
    """GFLOP/s of a (512, 256) x (256, 256) product, the step's typical one."""
    a, w = torch.randn(512, 256), torch.randn(256, 256)
    for _ in range(20):
        a @ w
    start = time.perf_counter()
    for _ in range(repeats):
        a @ w
    return 2 * 512 * 256 * 256 * repeats / (time.perf_counter() - start) / 1e9


if __name__ == "__main__":
    main()
