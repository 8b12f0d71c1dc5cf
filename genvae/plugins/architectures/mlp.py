"""Fully-connected ReLU encoder and decoder: ``depth`` hidden layers of ``hidden`` units.

The paper's 2-D network (Section 6.1, Appendix 9.2.1) is this with depth 4, hidden 256, z_dim 2,
which the 2-D datasets recommend (see toy2d.py for how the authors' code counts its layers).
Works for any flat input; class-conditional via one-hot labels. ``output="sigmoid"`` bounds the
decoder's output to (0, 1), the range of image data (the paper's decoders are linear)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Architecture, Decoder, Encoder, append_label
from genvae.errors import ConfigError, require_positive


def _mlp(in_dim: int, hidden: int, depth: int, out_dim: int) -> nn.Sequential:
    require_positive("arch", hidden=hidden)
    if depth < 0:
        raise ConfigError(f"arch.depth must be 0 (a linear map) or more hidden layers, got {depth}")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class MLPEncoder(Encoder):
    def __init__(self, data_shape: tuple[int, ...] = (2,), num_classes: int = 0, z_dim: int = 2, hidden: int = 256, depth: int = 3) -> None:
        super().__init__(data_shape=list(data_shape), num_classes=num_classes, z_dim=z_dim, hidden=hidden, depth=depth)
        self.num_classes = num_classes
        require_positive("arch", z_dim=z_dim)
        self.latent_groups = {"z": z_dim}
        self.net = _mlp(math.prod(data_shape) + num_classes, hidden, depth, 2 * z_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.net(append_label(x.flatten(1), y, self.num_classes))
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar


OUTPUTS = ("linear", "sigmoid")


class MLPDecoder(Decoder):
    def __init__(
        self, data_shape: tuple[int, ...] = (2,), num_classes: int = 0, z_dim: int = 2, hidden: int = 256, depth: int = 3,
        output: str = "linear",
    ) -> None:
        if output not in OUTPUTS:
            raise ConfigError(f"arch.output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        super().__init__(data_shape=list(data_shape), num_classes=num_classes, z_dim=z_dim, hidden=hidden, depth=depth, output=output)
        self.num_classes = num_classes
        self.data_shape = tuple(data_shape)
        self.net = _mlp(z_dim + num_classes, hidden, depth, math.prod(data_shape))
        if output == "sigmoid":
            self.net.append(nn.Sigmoid())

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(append_label(z, y, self.num_classes)).view(-1, *self.data_shape)


@hookimpl
def genvae_register_architectures(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "mlp",
        Architecture(
            MLPEncoder,
            MLPDecoder,
            "fully-connected ReLU network (the paper's 2-D model)",
            saved_defaults={"output": "linear"},  # settings saved before the option existed: benches compare them alike
        ),
    )
