"""VGG16 perceptual reconstruction loss, as LORD (Gabbay & Hoshen) and Soft-IntroVAE's image
translation (Appendix 9.3: "we replace the pixel-wise MSE reconstruction loss with the VGG
perceptual loss [25]").

Per sample: mean |x − x_rec| over pixels + Σ_l mean |φ_l(x) − φ_l(x_rec)| over the features of
VGG16 layers l (LORD's ``VGGDistance``). LORD reads torchvision's ``features`` at indices
2, 7, 12, 21, 30 whose following ReLUs are in place, so what it compares are relu1_2, relu2_2,
relu3_2, relu4_3 and pool5; here the ReLUs are not in place and the defaults name those indices
directly: ``layer_ids = (3, 8, 13, 22, 30)``. Inputs in [0, 1] go to VGG as they are (LORD does
not apply ImageNet normalisation; ``imagenet_normalize=True`` does). Grey images are repeated to
3 channels.

Scale: the objectives' built-in losses are *sums* over input dimensions (s = 1/dim rescales
the ELBO), while LORD's loss is a mean; with ``sum_scale=True`` (default) the per-sample loss is
multiplied by the number of input dimensions so that β_rec keeps the meaning it has with ``mse``.

Weights are never downloaded: pass torchvision's VGG16 state dict file (``vgg16-397923af.pth``
from https://download.pytorch.org/models/, fetched by the user). The file is sha256-verified
against ``sha256`` (a full hex digest or a prefix of at least 8 hex digits); when ``sha256`` is
not given, the prefix torchvision embeds in the file name (``vgg16-<prefix>.pth``) is used, and a
file without one is refused. Only the layers up to ``max(layer_ids)`` are built and loaded.

As a registered reconstruction loss (``objective.recon_loss = "vgg-perceptual"``) the weights file
is found at first use: ``$GENVAE_VGG16_WEIGHTS`` (and optionally ``$GENVAE_VGG16_SHA256``), else
``vgg16-397923af.pth`` in ``$TORCH_HOME/hub/checkpoints`` (torchvision's cache, default
``~/.cache/torch``) or ``../shared/data/vgg16/``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from genvae.core.hookspecs import hookimpl
from genvae.errors import ConfigError, DataError

TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"
WEIGHTS_ENV = "GENVAE_VGG16_WEIGHTS"
SHA256_ENV = "GENVAE_VGG16_SHA256"
DEFAULT_LAYER_IDS = (3, 8, 13, 22, 30)
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def vgg16_features(upto: int) -> nn.Sequential:
    """torchvision's VGG16 ``features`` (same indices, ReLUs not in place), layers 0..upto."""
    layers: list[nn.Module] = []
    width = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(width, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            width = int(v)
    if not 0 <= upto < len(layers):
        raise ConfigError(f"VGG16 feature layer ids must lie in [0, {len(layers) - 1}], got {upto}")
    return nn.Sequential(*layers[: upto + 1])


def verify_weights(path: str | Path, sha256: str | None = None) -> Path:
    """The weights file, checked to exist and to match ``sha256`` (or its name's prefix)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"VGG16 weights file {path} not found; the perceptual loss never downloads: get torchvision's "
            f"{TORCHVISION_VGG16_FILE} yourself and pass its path (or set ${WEIGHTS_ENV})"
        )
    expected = sha256
    if expected is None:
        match = re.search(r"-([0-9a-f]{8,64})\.pth?$", path.name)
        if match is None:
            raise ConfigError(f"cannot verify VGG16 weights {path}: pass sha256=<hex digest> (or name the file vgg16-<sha256 prefix>.pth)")
        expected = match.group(1)
    expected = expected.lower()
    if len(expected) < 8 or not re.fullmatch(r"[0-9a-f]+", expected):
        raise ConfigError(f"sha256 must be a hex digest or a prefix of at least 8 hex digits, got {sha256!r}")
    actual = sha256_of(path)
    if not actual.startswith(expected):
        raise DataError(f"VGG16 weights {path} have sha256 {actual[:16]}..., expected {expected[:16]}...: wrong or corrupt file")
    return path


def load_vgg16_features(weights: str | Path, sha256: str | None, upto: int) -> nn.Sequential:
    """torchvision's VGG16 ``features`` 0..upto with the weights of a verified file."""
    features = vgg16_features(upto)
    path = verify_weights(weights, sha256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file
        raise DataError(f"cannot read VGG16 weights {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    wanted = {k: v for k, v in state.items() if k.startswith("features.")}
    wanted = {k[len("features.") :]: v for k, v in wanted.items() if int(k.split(".")[1]) <= upto}
    missing = set(features.state_dict()) - set(wanted)
    if missing:
        raise DataError(f"VGG16 weights {path} lack {len(missing)} tensors (e.g. features.{sorted(missing)[0]}): not a torchvision VGG16 state dict")
    features.load_state_dict(wanted)
    return features


def features_at(features: nn.Sequential, x: Tensor, layer_ids: Sequence[int]) -> list[Tensor]:
    """The outputs of ``features``' layers ``layer_ids`` (in order) for input ``x``."""
    out = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in layer_ids:
            out.append(x)
    return out


class VGGPerceptualLoss(nn.Module):
    """``loss(x, x_rec) -> (batch,)``: LORD's VGG distance per sample (see the module doc)."""

    def __init__(
        self,
        weights: str | Path,
        sha256: str | None = None,
        layer_ids: Sequence[int] = DEFAULT_LAYER_IDS,
        imagenet_normalize: bool = False,
        sum_scale: bool = True,
    ) -> None:
        super().__init__()
        self.layer_ids = sorted(int(i) for i in layer_ids)
        if not self.layer_ids:
            raise ConfigError("layer_ids must name at least one VGG16 feature layer")
        self.features = load_vgg16_features(weights, sha256, self.layer_ids[-1])
        self.features.eval().requires_grad_(False)
        self.imagenet_normalize, self.sum_scale = bool(imagenet_normalize), bool(sum_scale)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGPerceptualLoss":
        super().train(mode)
        self.features.eval()  # a fixed feature extractor
        return self

    def _features(self, x: Tensor) -> list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.imagenet_normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return features_at(self.features, x, self.layer_ids)

    def forward(self, x: Tensor, x_rec: Tensor) -> Tensor:
        b = x.shape[0]
        if self.features[0].weight.device != x.device:
            self.to(x.device)
        loss = (x - x_rec).abs().reshape(b, -1).mean(dim=1)
        both = self._features(torch.cat([x, x_rec]).to(self.features[0].weight.dtype))
        for f in both:
            f_x, f_rec = f.chunk(2)
            loss = loss + (f_x - f_rec).abs().reshape(b, -1).mean(dim=1).to(loss.dtype)
        return loss * x[0].numel() if self.sum_scale else loss


def default_weights_path() -> Path | None:
    """$GENVAE_VGG16_WEIGHTS, else torchvision's cache or ../shared/data/vgg16 if the file is there."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    for candidate in (torch_home / "hub" / "checkpoints" / TORCHVISION_VGG16_FILE, Path.cwd().parent / "shared" / "data" / "vgg16" / TORCHVISION_VGG16_FILE):
        if candidate.is_file():
            return candidate
    return None


class LazyVGGPerceptual:
    """The registered ``vgg-perceptual`` loss: builds :class:`VGGPerceptualLoss` at first use
    (so listing plugins never reads weights), from :func:`default_weights_path`."""

    def __init__(self) -> None:
        self._loss: VGGPerceptualLoss | None = None

    def __call__(self, x: Tensor, x_rec: Tensor) -> Tensor:
        if self._loss is None:
            path = default_weights_path()
            if path is None:
                raise DataError(
                    f"recon_loss 'vgg-perceptual' needs torchvision's VGG16 weights ({TORCHVISION_VGG16_FILE}); "
                    f"nothing is downloaded: set ${WEIGHTS_ENV} to the file"
                )
            self._loss = VGGPerceptualLoss(path, sha256=os.environ.get(SHA256_ENV) or None)
        return self._loss(x, x_rec)


@hookimpl
def genvae_register_losses(register) -> None:  # type: ignore[no-untyped-def]
    register("vgg-perceptual", LazyVGGPerceptual())
