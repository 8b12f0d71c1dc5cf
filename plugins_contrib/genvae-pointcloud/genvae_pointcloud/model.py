"""``pointnet``: the 3-D Soft-IntroVAE's networks in outline (the authors build on 3D-AAE).

Encoder (PointNet without the input transforms): a shared per-point MLP — the same linear
layers applied to every point (a 1×1 convolution), ``channels`` wide, ReLU — then a max-pool over the points (order-free), then
fully-connected layers (``fc``) to (μ, log σ²). Decoder: fully-connected layers (``decoder_hidden``)
from z to N·3 numbers, reshaped to N points. The defaults follow 3D-AAE / the authors' 3-D code
(channels 64-128-256-256-512, fc 256, decoder 64-128-512-1024, z 128); the small shapes dataset
recommends a smaller model. Class-conditional when ``num_classes`` > 0 (one-hot labels appended to
the pooled feature and to z).

Data shape: (num_points, 3) per sample; batches are (B, N, 3).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from genvae.core.interfaces import Decoder, Encoder, append_label
from genvae.errors import ConfigError


def _check_shape(data_shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(int(d) for d in data_shape)
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ConfigError(f"pointnet needs point clouds of shape (num_points, dims), e.g. (2048, 3); got data shape {shape}: use a point-cloud dataset")
    return shape  # type: ignore[return-value]


def _fc(in_dim: int, widths: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(in_dim, int(w)), nn.ReLU()]
        in_dim = int(w)
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class PointNetEncoder(Encoder):
    def __init__(
        self,
        data_shape: tuple[int, ...] = (2048, 3),
        num_classes: int = 0,
        z_dim: int = 128,
        channels: Sequence[int] = (64, 128, 256, 256, 512),
        fc: Sequence[int] = (256,),
        decoder_hidden: Sequence[int] = (64, 128, 512, 1024),
    ) -> None:
        super().__init__(data_shape=list(data_shape), num_classes=num_classes, z_dim=z_dim, channels=list(channels), fc=list(fc),
                         decoder_hidden=list(decoder_hidden))  # fmt: skip
        _, dims = _check_shape(data_shape)
        self.num_classes = num_classes
        self.latent_groups = {"z": z_dim}
        layers: list[nn.Module] = []
        width = dims
        for c in channels:  # nn.Linear on (B, N, C) is a 1×1 convolution over the points, faster on CPUs
            layers += [nn.Linear(width, int(c)), nn.ReLU()]
            width = int(c)
        self.points = nn.Sequential(*layers)  # shared per-point MLP
        self.head = _fc(width + num_classes, fc, 2 * z_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.points(x).amax(dim=1)  # (B, N, C) -> max over the points -> (B, C)
        mu, logvar = self.head(append_label(h, y, self.num_classes)).chunk(2, dim=1)
        return mu, logvar


class PointNetDecoder(Decoder):
    def __init__(
        self,
        data_shape: tuple[int, ...] = (2048, 3),
        num_classes: int = 0,
        z_dim: int = 128,
        channels: Sequence[int] = (64, 128, 256, 256, 512),
        fc: Sequence[int] = (256,),
        decoder_hidden: Sequence[int] = (64, 128, 512, 1024),
    ) -> None:
        super().__init__(data_shape=list(data_shape), num_classes=num_classes, z_dim=z_dim, channels=list(channels), fc=list(fc),
                         decoder_hidden=list(decoder_hidden))  # fmt: skip
        self.data_shape = _check_shape(data_shape)
        self.num_classes = num_classes
        self.net = _fc(z_dim + num_classes, decoder_hidden, self.data_shape[0] * self.data_shape[1])

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(append_label(z, y, self.num_classes)).view(-1, *self.data_shape)
