"""Arithmetic of the paper's FFHQ recipe: floating-point operations of one Soft-IntroVAE training
step per image at every level of the style model, and of the whole schedule.

Counts the matrix products and convolutions (torch's FLOP formulas) of one real step — both
phases of Algorithm 2, forward and backward — at batch 1 on the CPU, with the default `style`
options at 256x256 (z = w = 512, channels 512 ... 64: the authors' ffhq256.yaml). The schedule is
the `ffhq` dataset's recommendation: 960,000 images per level from 4x4 to 128x128, then 256x256
until 300 epochs of 60,000 images. A GPU's time follows from its sustained rate; this script
measures no GPU. Minutes on one core (the 256x256 step alone is several TFLOP).

    python benchmarks/style_flops.py [--resolution 256]
"""

from __future__ import annotations

import argparse
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from genvae.core.interfaces import Batch, Models
from genvae.plugins.architectures.style import StyleDecoder, StyleEncoder
from genvae.plugins.datasets.image_folder import FFHQ
from genvae.plugins.objectives.soft_intro import SoftIntroConfig, SoftIntroVAE

EPOCHS_PER_LEVEL = 16  # ffhq256.yaml, as the ffhq dataset's images_per_level


class CountFlops(TorchDispatchMode):
    """Sums torch's FLOP formulas (matmuls, convolutions and their gradients) over the ops run.
    (FlopCounterMode's module tracker fails when requires_grad is switched per phase.)"""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


def step_flops(encoder: StyleEncoder, decoder: StyleDecoder, level: int) -> int:
    """FLOPs of one Soft-IntroVAE step (encoder phase + decoder phase, forward + backward), batch 1."""
    encoder.set_growth(level, 1.0)
    decoder.set_growth(level, 1.0)
    size = 4 * 2**level
    models = Models(encoder, decoder, dict(encoder.latent_groups), 3 * size * size, torch.Generator().manual_seed(0))
    objective = SoftIntroVAE(SoftIntroConfig(beta_rec=FFHQ.BETA_REC, beta_kl=FFHQ.BETA_KL, beta_neg=512.0))
    batch = Batch(torch.rand(1, 3, size, size), None)
    objective.setup(models)
    parts = {"encoder": encoder, "decoder": decoder}
    with CountFlops() as counter:
        ctx = objective.begin_step(batch, models, step=0)
        for phase in objective.phases:
            for name, module in parts.items():  # as the trainer: only the phase's network gets weight gradients
                module.requires_grad_(name in phase.trains)
            objective.phase_loss(phase, ctx, models).loss.backward()
    return counter.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    shape = (3, args.resolution, args.resolution)
    encoder, decoder = StyleEncoder(shape).train(), StyleDecoder(shape).train()
    levels = int(math.log2(args.resolution)) - 1
    total_images = FFHQ.EPOCHS * FFHQ.TRAIN_SIZE
    level_images = EPOCHS_PER_LEVEL * FFHQ.TRAIN_SIZE
    total = 0.0
    print("| resolution | TFLOP per image and step | images | PFLOP |")
    print("|---|---|---|---|")
    for level in range(levels):
        images = level_images if level < levels - 1 else total_images - level_images * (levels - 1)
        flops = step_flops(encoder, decoder, level)
        total += flops * images
        print(f"| {4 * 2**level}x{4 * 2**level} | {flops / 1e12:.3f} | {images:,} | {flops * images / 1e15:,.0f} |")
    print(f"\ntotal: {total / 1e18:.2f} EFLOP; at 100 TFLOP/s sustained per GPU: {total / 1e14 / 3600:,.0f} GPU-hours")


if __name__ == "__main__":
    main()
