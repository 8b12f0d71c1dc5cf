"""LPIPS (Zhang et al. 2018, version 0.1, VGG16 trunk): the perceptual distance the paper's
Table 4 reports for content transfer. Used by the ``translation`` metric when its weights are here.

d(x, y) = Σ_l mean_hw ‖w_l ⊙ (f̂_l(x) − f̂_l(y))‖², with f̂_l the VGG16 activations relu1_2,
relu2_2, relu3_3, relu4_3, relu5_3 scaled to unit length over channels, and w_l the learned
non-negative channel weights ("lin" layers). Inputs in [0, 1] are mapped to [−1, 1] and then
shifted and scaled per channel as the ``lpips`` package's ScalingLayer does.

Two files, neither ever downloaded:

- the trunk: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``), found like the perceptual
  loss's (``$GENVAE_VGG16_WEIGHTS``, torchvision's cache, ``../shared/data/vgg16/``);
- the lin layers: ``weights/v0.1/vgg.pth`` of the ``lpips`` package (7 KB, inside its wheel:
  ``pip install lpips``), found in the installed package or at ``$GENVAE_LPIPS_WEIGHTS``; its
  sha256 is checked.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from genvae.errors import DataError
from genvae.plugins.losses.perceptual import (
    SHA256_ENV,
    TORCHVISION_VGG16_FILE,
    WEIGHTS_ENV,
    default_weights_path,
    features_at,
    load_vgg16_features,
    sha256_of,
)

LIN_ENV = "GENVAE_LPIPS_WEIGHTS"
LIN_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"  # lpips 0.1.4, weights/v0.1/vgg.pth
LAYER_IDS = (3, 8, 15, 22, 29)  # torchvision VGG16 features: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _unit_length(f: Tensor, eps: float = 1e-10) -> Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """``lpips(x, y) -> (batch,)`` for images in [0, 1] (grey images are repeated to RGB)."""

    def __init__(self, vgg_weights: str | Path, lin_weights: str | Path, vgg_sha256: str | None = None) -> None:
        super().__init__()
        self.features = load_vgg16_features(vgg_weights, vgg_sha256, LAYER_IDS[-1])
        lin_path = Path(lin_weights).expanduser()
        if not lin_path.is_file():
            raise DataError(f"LPIPS weights file {lin_path} not found: it is weights/v0.1/vgg.pth inside the lpips package (pip install lpips)")
        digest = sha256_of(lin_path)
        if digest != LIN_SHA256:
            raise DataError(f"LPIPS weights {lin_path} are not LPIPS v0.1 vgg.pth (sha256 {digest[:16]}..., expected {LIN_SHA256[:16]}...)")
        lin = torch.load(lin_path, map_location="cpu", weights_only=True)
        for i, c in enumerate(CHANNELS):  # lpips stores lin{i}.model.1.weight (after a dropout), (1, C, 1, 1)
            weight = next(v for k, v in lin.items() if k.startswith(f"lin{i}."))
            self.register_buffer(f"lin{i}", weight.reshape(1, c, 1, 1).float(), persistent=False)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        b = x.shape[0]
        h = torch.cat([x, y]).to(self.shift.device, torch.float32)
        if h.shape[1] == 1:
            h = h.expand(-1, 3, -1, -1)
        h = (2 * h - 1 - self.shift) / self.scale
        distance = torch.zeros(b, device=h.device)
        for layer, f in enumerate(features_at(self.features, h, LAYER_IDS)):
            f_x, f_y = _unit_length(f).chunk(2)
            distance = distance + ((f_x - f_y).pow(2) * getattr(self, f"lin{layer}")).sum(1).mean((1, 2))
        return distance


def lin_weights_path() -> Path | None:
    """$GENVAE_LPIPS_WEIGHTS, else the file inside an installed ``lpips`` package (not imported)."""
    if os.environ.get(LIN_ENV):
        return Path(os.environ[LIN_ENV])
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "weights" / "v0.1" / "vgg.pth"
        if candidate.is_file():
            return candidate
    return None


def missing_weights() -> str | None:
    """Why LPIPS cannot be computed here (which file is missing and how to get it), or None."""
    vgg, lin = default_weights_path(), lin_weights_path()
    missing = []
    if vgg is None or not vgg.is_file():
        missing.append(f"torchvision's VGG16 weights {TORCHVISION_VGG16_FILE} (set ${WEIGHTS_ENV}{f'; {vgg} does not exist' if vgg else ''})")
    if lin is None or not lin.is_file():
        missing.append(f"the LPIPS v0.1 lin layers (pip install lpips, or set ${LIN_ENV} to its weights/v0.1/vgg.pth{f'; {lin} does not exist' if lin else ''})")
    return "LPIPS needs " + " and ".join(missing) if missing else None


def load_lpips() -> LPIPS:
    """LPIPS from the weights found (see the module doc); a DataError saying what is missing."""
    reason = missing_weights()
    if reason is not None:
        raise DataError(reason + "; nothing is downloaded")
    return LPIPS(default_weights_path(), lin_weights_path(), vgg_sha256=os.environ.get(SHA256_ENV) or None)  # type: ignore[arg-type]
