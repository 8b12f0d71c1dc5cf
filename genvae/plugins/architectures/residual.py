"""IntroVAE's residual encoder / decoder (paper Section 6.3, Appendix 9.2.2, Table 6), parametrised.

Layout (as the authors' code, ``channels = (c_0, ..., c_{L-1})``, image side S, base side
b = S' / 2^L where S' is S rounded up to a multiple of 2^L):

Encoder: Conv 5x5 (c_0) + BN + LeakyReLU(0.2) + AvgPool, then for each c_i (i >= 1) a residual
block c_{i-1} -> c_i followed by AvgPool, then one residual block c_{L-1} -> c_{L-1} at b x b and
a linear layer to 2·z_dim = (mu, logvar).

Decoder: Linear z -> c_{L-1}·b·b + ReLU, then for each c_i in reverse order a residual block
(previous width -> c_i) followed by nearest x2 upsampling, one residual block c_0 -> c_0 at full
size, and Conv 5x5 to the image channels (no output activation, as the authors' MSE setting).

A residual block (``block``) is, as the authors' Soft-IntroVAE code (``soft-intro``, the default):
LReLU(BN(conv3(LReLU(BN(conv3(x))))) + shortcut(x)), the shortcut a 1x1 conv when the width
changes; their docstring names the one change from IntroVAE's block (``introvae``, genvae's
block before that option existed), which normalises the sum instead: LReLU(BN(conv3(...) + shortcut(x))).
For CIFAR-10 (32x32, channels (64, 128, 256)) this is the 4x4 base of Table 6; for 28x28 with channels
(64, 128) it is the authors' 7x7 base. When S is not a multiple of 2^L (e.g. 28 with three
levels) the encoder zero-pads the input to S' and the decoder centre-crops its S' output to S,
so any S >= 2^L works without resizing the data.

Normalisation (``norm``): the authors' BatchNorm (``batch``, the default). Its running
statistics — used in eval mode — would describe the fakes the encoder sees twice per step
(Alg. 2 lines 10 and 22) as much as the data, so the trainer recomputes them from real data
before every export and every figure (genvae/core/batchnorm.py); eval-mode outputs are then
as good as train-mode ones and do not depend on the rest of the batch. (The authors generate
and compute FID in train mode instead; see their issues #13, #14, #20.) ``batch-stats`` uses
batch statistics in eval mode too (what the authors evaluated; outputs depend on the batch);
``none`` removes normalisation (convolutions then get biases).

Class-conditional (``num_classes > 0``): as the authors' CVAE, a one-hot label is appended to
the flattened features before the encoder's linear layer and to z before the decoder's.

Speed: convolutions run in channels_last memory format with in-place activations; this is
numerically the same network as the authors' (only memory layout differs).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Architecture, Decoder, Encoder, append_label
from genvae.errors import ConfigError, require_positive

CIFAR10_CHANNELS = (64, 128, 256)


NORMS = ("batch-stats", "batch", "none")
BLOCKS = ("soft-intro", "introvae")


def _norm(channels: int, norm: str) -> nn.Module:
    """BatchNorm as the authors (``batch``: running statistics in eval mode; ``batch-stats``: batch
    statistics always, i.e. eval mode normalises as training does) or none (``none``)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "batch-stats":
        return nn.BatchNorm2d(channels, track_running_stats=False)
    return nn.Identity()


class ResidualBlock(nn.Module):
    """LReLU(BN(conv3(LReLU(BN(conv3(x))))) + shortcut(x)) (``soft-intro``) or, IntroVAE's,
    LReLU(BN(conv3(LReLU(BN(conv3(x)))) + shortcut(x))) (``introvae``)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", block: str = "soft-intro") -> None:
        super().__init__()
        bias = norm == "none"
        self.norm_after_sum = block == "introvae"
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.bn1 = _norm(out_channels, norm)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        self.bn2 = _norm(out_channels, norm)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        h = F.leaky_relu(self.bn1(self.conv1(x)), 0.2, inplace=True)
        if self.norm_after_sum:
            return F.leaky_relu(self.bn2(self.conv2(h) + identity), 0.2, inplace=True)
        return F.leaky_relu(self.bn2(self.conv2(h)) + identity, 0.2, inplace=True)


def _geometry(data_shape: Sequence[int], channels: Sequence[int], norm: str, block: str) -> tuple[int, int, int, int]:
    """(image channels, image side, padded side, base side) for a square image."""
    if norm not in NORMS:
        raise ConfigError(f"arch.norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if block not in BLOCKS:
        raise ConfigError(f"arch.block must be one of {', '.join(BLOCKS)}, got {block!r}")
    if len(data_shape) != 3:
        raise ConfigError(f"the residual architecture needs images shaped (C, H, W), got data shape {tuple(data_shape)}")
    if len(channels) < 1 or any(int(c) <= 0 for c in channels):
        raise ConfigError(f"arch.channels must be a non-empty list of positive widths, got {list(channels)}")
    image_channels, height, width = (int(d) for d in data_shape)
    if height != width:
        raise ConfigError(f"the residual architecture needs square images, got {height}x{width}")
    if height < 2:
        raise ConfigError(f"images of side {height} are too small for the residual architecture: it halves the side at least "
                          "once, so it needs a side of at least 2; use larger images (e.g. data.resolution=32)")  # fmt: skip
    factor = 2 ** len(channels)
    if height < factor:
        most = height.bit_length() - 1
        raise ConfigError(
            f"images of side {height} are too small for {len(channels)} resolution levels (arch.channels={list(channels)}): "
            f"each entry halves the side, so {len(channels)} entries need a side of at least {factor}; "
            f"use at most {most} channel {'entry' if most == 1 else 'entries'}, or larger images"
        )
    padded = -(-height // factor) * factor
    return image_channels, height, padded, padded // factor


class ResidualEncoder(Encoder):
    """x -> (mu, logvar) through IntroVAE's residual convolutional encoder."""

    def __init__(
        self,
        data_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 0,
        z_dim: int = 128,
        channels: Sequence[int] = CIFAR10_CHANNELS,
        norm: str = "batch",
        block: str = "soft-intro",
    ) -> None:
        channels = [int(c) for c in channels]
        super().__init__(
            data_shape=[int(d) for d in data_shape], num_classes=int(num_classes), z_dim=int(z_dim), channels=channels, norm=norm, block=block
        )
        image_channels, self.size, self.padded, base = _geometry(data_shape, channels, norm, block)
        self.num_classes = int(num_classes)
        require_positive("arch", z_dim=z_dim)
        self.latent_groups = {"z": int(z_dim)}
        layers: list[nn.Module] = [
            nn.Conv2d(image_channels, channels[0], 5, padding=2, bias=norm == "none"),
            _norm(channels[0], norm),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AvgPool2d(2),
        ]
        width = channels[0]
        for ch in channels[1:]:
            layers += [ResidualBlock(width, ch, norm, block), nn.AvgPool2d(2)]
            width = ch
        layers.append(ResidualBlock(width, width, norm, block))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width * base * base + self.num_classes, 2 * int(z_dim))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.padded != self.size:
            pad = (self.padded - self.size) // 2
            x = F.pad(x, (pad, self.padded - self.size - pad, pad, self.padded - self.size - pad))
        h = self.features(x.contiguous(memory_format=torch.channels_last))
        h = h.contiguous().flatten(1)  # NCHW order, as the authors' view(-1)
        h = append_label(h, y, self.num_classes)
        mu, logvar = self.fc(h).chunk(2, dim=1)
        return mu, logvar


class ResidualDecoder(Decoder):
    """z -> x through IntroVAE's residual convolutional decoder (nearest x2 upsampling)."""

    def __init__(
        self,
        data_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 0,
        z_dim: int = 128,
        channels: Sequence[int] = CIFAR10_CHANNELS,
        norm: str = "batch",
        block: str = "soft-intro",
    ) -> None:
        channels = [int(c) for c in channels]
        super().__init__(
            data_shape=[int(d) for d in data_shape], num_classes=int(num_classes), z_dim=int(z_dim), channels=channels, norm=norm, block=block
        )
        image_channels, self.size, self.padded, self.base = _geometry(data_shape, channels, norm, block)
        self.num_classes = int(num_classes)
        self.top_channels = channels[-1]
        self.fc = nn.Sequential(nn.Linear(int(z_dim) + self.num_classes, channels[-1] * self.base * self.base), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        width = channels[-1]
        for ch in reversed(channels):
            layers += [ResidualBlock(width, ch, norm, block), nn.Upsample(scale_factor=2, mode="nearest")]
            width = ch
        layers += [ResidualBlock(width, width, norm, block), nn.Conv2d(width, image_channels, 5, padding=2)]
        self.main = nn.Sequential(*layers)
        self.to(memory_format=torch.channels_last)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z = append_label(z, y, self.num_classes)
        h = self.fc(z).view(-1, self.top_channels, self.base, self.base)
        x = self.main(h.contiguous(memory_format=torch.channels_last))
        if self.padded != self.size:
            start = (self.padded - self.size) // 2
            x = x[:, :, start : start + self.size, start : start + self.size]
        return x.contiguous()


@hookimpl
def genvae_register_architectures(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "residual",
        Architecture(
            ResidualEncoder,
            ResidualDecoder,
            "IntroVAE's residual conv encoder/decoder (paper Table 6; options z_dim, channels, norm, block)",
            saved_defaults={"block": "introvae"},  # runs saved before the option existed used IntroVAE's block
        ),
    )
