"""Feature extractors for FID, KID and precision / recall: plugins registered through the hook
``genvae_register_features`` and chosen with ``--features NAME``. The built-ins:

- ``inception``: the TF-2015-12-05 FID Inception (``inception.py``) with the user's weight file.
  Only this gives numbers comparable to published FID (and only with 50,000 samples).
- ``random-conv``: a fixed-seed random convolutional network (no weights to download). Its
  "FID" is **not comparable to published FID**; it is a consistent distance between image sets
  for comparing models on the same data (and for tests). Random conv features measure
  low-level image statistics (contrast, edges, textures) rather than semantics.

(``classifier``, a small classifier trained on the dataset itself, registers from
``classifier.py``.)
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from genvae.core.hookspecs import hookimpl
from genvae.errors import ConfigError
from genvae.plugins.metrics.image_prep import RESIZE_MODES, quantize_uint8, resize_tf1_bilinear, to_rgb
from genvae.plugins.metrics.inception import InceptionFeatures


class FeatureExtractor(Protocol):
    """Float images in [0, 1], (N, C, H, W) → features (N, dim). Must be in eval mode so that a
    sample's features do not depend on its batch."""

    name: str
    dim: int

    def settings(self) -> dict[str, Any]: ...

    def __call__(self, images: Tensor) -> Tensor: ...

    def to(self, device: Any) -> Any: ...


class RandomConvFeatures(nn.Module):
    """A fixed-seed random conv net: uint8-rounded images, resized to 64×64 (TF1 bilinear),
    scaled to [-1, 1), four 3×3 conv + ReLU layers (32, 64, 128, 256 channels, strides 1, 2, 2, 2),
    global average pool → 256-d. Kaiming-normal weights drawn from ``torch.Generator(seed)``;
    the weights' SHA-256 is part of the settings, so references made with other weights are refused.
    NOT comparable to published FID."""

    name = "random-conv"
    dim = 256
    size = 64

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        widths, strides = (3, 32, 64, 128, 256), (1, 2, 2, 2)
        layers: list[nn.Module] = []
        g = torch.Generator().manual_seed(seed)
        for c_in, c_out, stride in zip(widths[:-1], widths[1:], strides):
            conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / (c_in * 9)))
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.eval()
        digest = hashlib.sha256()
        for p in self.net.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        self.weights_sha256 = digest.hexdigest()

    def train(self, mode: bool = True) -> "RandomConvFeatures":
        return super().train(False)

    def settings(self) -> dict[str, Any]:
        return {"features": self.name, "dim": self.dim, "seed": self.seed, "resize": f"tf1-bilinear-{self.size}",
                "quantize": "uint8-round", "weights_sha256": self.weights_sha256}  # fmt: skip

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        device = next(self.net.parameters()).device
        x = to_rgb(quantize_uint8(images)).to(torch.float32)
        x = (resize_tf1_bilinear(x, self.size) - 128.0) / 128.0
        return self.net(x.to(device)).mean(dim=(2, 3))


def _inception_factory(inception_weights: str | Path | None = None, resize: str = "tf1-bilinear", **_: Any) -> InceptionFeatures:
    return InceptionFeatures.from_file(inception_weights, resize=resize)


def _random_conv_factory(seed: int = 0, **_: Any) -> RandomConvFeatures:
    return RandomConvFeatures(seed=seed)


def build_feature_extractor(name: str = "inception", **options: Any) -> FeatureExtractor:
    """The registered extractor ``name`` (hook ``genvae_register_features``) built with ``options``."""
    from genvae.core.plugins import get_plugins

    factory = get_plugins().features.get(name)  # an unknown name: "did you mean …"
    if options.get("resize") is None:
        options.pop("resize", None)
    elif options["resize"] not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {options['resize']!r}; choose one of {', '.join(RESIZE_MODES)}")
    return factory(**options)


@hookimpl
def genvae_register_features(register) -> None:  # type: ignore[no-untyped-def]
    register("inception", _inception_factory)
    register("random-conv", _random_conv_factory)

