"""The FID Inception network: TensorFlow's 2015-12-05 Inception-v3, pool3 features (2048-d).

The architecture is the PyTorch port used by pytorch-fid (``FIDInceptionA/C/E_1/E_2`` on top of
torchvision's Inception3) and torch-fidelity (``FeatureExtractorInceptionV3``). It differs from
torchvision's ImageNet Inception-v3 in four places, all kept here:

- the average-pool branches of blocks A, C and E_1 exclude the zero padding
  (``count_include_pad=False``), as TensorFlow's average pool;
- the pool branch of the last block (E_2, ``Mixed_7c``) is a *max* pool;
- BatchNorm ε = 0.001;
- 1008 output classes (the fc layer is kept only so that the weight files load strictly).

Nothing is downloaded. The weights come from a file the user supplies (``--inception-weights``
or ``GENVAE_INCEPTION_WEIGHTS``): either pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
or torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``. Both are state dicts with the
same key layout (torchvision's names: ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.
running_mean``, ..., ``fc.weight``; pooling layers carry no parameters), so one loader serves
both; ``module.`` prefixes, ``num_batches_tracked`` and ``AuxLogits.*`` entries are dropped.
The two files are published with the same size and SHA-256 (``6726825d0af5…``; the name's
``6726825d`` is the hash prefix, torch.hub's convention).

Input conventions (as torch-fidelity / TensorFlow): images are quantised to uint8 by rounding,
resized to 299×299, then mapped to [-1, 1) by (x − 128) / 128. pytorch-fid instead uses
2·x/255 − 1 on float images, which differs by < 0.4 % of a grey level; numbers computed by the
two are close but not bit-identical. Two resize modes:

- ``tf1-bilinear`` (default): TensorFlow 1.x ``resize_bilinear(align_corners=False)`` — what the
  original TF FID code and torch-fidelity compute (not ``F.interpolate``, whose half-pixel
  centres differ);
- ``pil-bicubic``: clean-fid's "clean" resize — each channel as a float32 PIL image resized
  with ``Image.BICUBIC`` (antialiased), clipped to [0, 255].

The network is always in eval mode (BatchNorm uses its running statistics), so the features of
an image do not depend on the batch it is in — the reference Soft-IntroVAE code's FID ran its
Inception in train mode.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genvae.errors import ConfigError, DataError
from genvae.plugins.metrics.image_prep import RESIZE_MODES, quantize_uint8, resize_pil_bicubic, resize_tf1_bilinear, to_rgb

WEIGHTS_ENV = "GENVAE_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
FEATURE_DIM = 2048

PYTORCH_FID_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
SHA256_PREFIX = "6726825d"  # in both file names (torch.hub convention: a prefix of the file's SHA-256)
# Full SHA-256 and size as published for torch-fidelity's file and, with the same values, for
# pytorch-fid's (several independent records; we could not download the files to check).
KNOWN_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
KNOWN_SIZE = 95_628_359
KNOWN_FILES: dict[str, tuple[str, str]] = {
    "pt_inception-2015-12-05-6726825d.pth": ("pytorch-fid", PYTORCH_FID_URL),
    "weights-inception-2015-12-05-6726825d.pth": ("torch-fidelity", TORCH_FIDELITY_URL),
}


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Conv (no bias) → BatchNorm(ε = 0.001) → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: Tensor) -> Tensor:
    """3×3 stride-1 average pool that ignores the zero padding (TensorFlow's ``avg_pool``)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """Block E; ``max_pool=True`` for the last block (the FID graph's max-pool quirk)."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """TF-2015-12-05 Inception-v3 up to pool3. ``forward`` takes images already resized to
    299×299 and scaled to [-1, 1]; use :class:`InceptionFeatures` for raw images."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # unused for FID; present in both weight files
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FIDInceptionV3":
        """Always eval mode: BatchNorm must use its running statistics."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):  # fmt: skip
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)  # pool3, (N, 2048)


# --------------------------------------------------------------------------------------------
# Input preparation
# --------------------------------------------------------------------------------------------


def prepare_inception_input(images_uint8: Tensor, resize: str = "tf1-bilinear") -> Tensor:
    """uint8 (N, 1|3, H, W) → float32 (N, 3, 299, 299) in [-1, 1) as the TF graph: (x − 128) / 128."""
    if resize not in RESIZE_MODES:
        raise ConfigError(f"unknown Inception resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    x = to_rgb(images_uint8).to(torch.float32)
    x = resize_tf1_bilinear(x, INPUT_SIZE) if resize == "tf1-bilinear" else resize_pil_bicubic(x, INPUT_SIZE)
    return (x - 128.0) / 128.0


# --------------------------------------------------------------------------------------------
# Weight files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsInfo:
    path: Path
    sha256: str
    source: str  # "pytorch-fid", "torch-fidelity" or "unknown"
    verified: str  # "sha256" (full hash known), "sha256-prefix" or "unverified"

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "sha256": self.sha256, "source": self.source, "verified": self.verified}


def missing_weights_message(what: str) -> str:
    return (
        f"{what}; FID needs the TF Inception weights, which are never downloaded at run time. "
        f"Download {PYTORCH_FID_URL} (or torch-fidelity's {TORCH_FIDELITY_URL}) on a machine with internet, "
        f"copy it here and pass --inception-weights PATH or set {WEIGHTS_ENV}=PATH "
        f"(without them: --features=classifier --feature-weights DIR, a classifier of your labelled data made by "
        f"'genvae eval train-classifier DATA --out DIR', or --features=random-conv; neither is comparable to published FID)"
    )


def resolve_weights_path(path: str | Path | None = None) -> Path:
    """The weight file from ``path`` or ``$GENVAE_INCEPTION_WEIGHTS``; a clear error if neither exists."""
    given = path if path not in (None, "") else os.environ.get(WEIGHTS_ENV) or None
    if given is None:
        raise ConfigError(missing_weights_message("no Inception weight file given"))
    resolved = Path(given).expanduser()
    if not resolved.is_file():
        raise DataError(missing_weights_message(f"Inception weight file {resolved} does not exist"))
    return resolved


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights_file(path: str | Path, warn: bool = True) -> WeightsInfo:
    """Identify the weight file and check its SHA-256.

    A file named like one of the published files, or of the published size, must have the
    published hash (full hash, or at least the ``6726825d`` prefix) — otherwise it is corrupt or
    a different network and a ``DataError`` says so. Other files (own conversions) load with a
    warning and are recorded as ``unverified`` in the results.
    """
    path = Path(path)
    sha = sha256_file(path)
    size = path.stat().st_size
    source = KNOWN_FILES.get(path.name, ("unknown", ""))[0]
    if sha == KNOWN_SHA256:
        return WeightsInfo(path, sha, source if source != "unknown" else "pytorch-fid/torch-fidelity (same bytes)", "sha256")
    if sha.startswith(SHA256_PREFIX):
        return WeightsInfo(path, sha, source, "sha256-prefix")
    if source != "unknown" or size == KNOWN_SIZE:
        raise DataError(
            f"Inception weight file {path} ({size} bytes) has SHA-256 {sha[:16]}…, but the published file has "
            f"{KNOWN_SHA256[:16]}… ({KNOWN_SIZE} bytes): it is truncated, corrupt or a different network. "
            f"Download it again from {PYTORCH_FID_URL}"
        )
    info = WeightsInfo(path, sha, "unknown", "unverified")
    if warn:
        warn_unverified(info)
    return info


def warn_unverified(info: WeightsInfo) -> None:
    warnings.warn(
        f"Inception weight file {info.path} is not one of the published FID weight files (SHA-256 {info.sha256[:16]}…); "
        "its FID is not comparable to published numbers",
        stacklevel=3,
    )


def not_a_state_dict_message(path: Path) -> str:
    expected = " or ".join(f"{name} ({source})" for name, (source, _) in KNOWN_FILES.items())
    return f"{path} is not a PyTorch state dict; expected the FID Inception weights file {expected}"


def normalize_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """Map pytorch-fid's / torch-fidelity's key layout onto ours (they are the same names):
    drop ``module.`` prefixes, BatchNorm ``num_batches_tracked`` and the auxiliary classifier."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith("num_batches_tracked") or key.startswith("AuxLogits."):
            continue
        out[key] = value
    return out


def load_fid_inception(path: str | Path | None = None, check: bool = True) -> tuple[FIDInceptionV3, WeightsInfo]:
    """The FID Inception with the user's weights (eval mode, no gradients) and what the file is."""
    resolved = resolve_weights_path(path)
    info = check_weights_file(resolved, warn=False) if check else WeightsInfo(resolved, "", "unknown", "unverified")
    try:
        state = torch.load(resolved, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 — not a torch file, or one holding more than tensors
        raise DataError(not_a_state_dict_message(resolved)) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise DataError(not_a_state_dict_message(resolved))
    model = FIDInceptionV3()
    missing, unexpected = model.load_state_dict(normalize_state_dict(state), strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise DataError(
            f"{resolved} does not hold the FID Inception weights: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    if check and info.verified == "unverified":
        warn_unverified(info)
    return model.eval(), info


class InceptionFeatures(nn.Module):
    """Float images in [0, 1] (N, 1|3, H, W) → pool3 features (N, 2048), float32.

    Images are quantised to uint8 by rounding, resized to 299×299 (``resize``), scaled by
    (x − 128) / 128 and passed through the network in eval mode.
    """

    name = "inception"
    dim = FEATURE_DIM

    def __init__(self, network: FIDInceptionV3, resize: str = "tf1-bilinear", weights: WeightsInfo | None = None) -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ConfigError(f"unknown Inception resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        self.network = network.eval()
        self.resize = resize
        self.weights = weights

    @classmethod
    def from_file(cls, path: str | Path | None = None, resize: str = "tf1-bilinear") -> "InceptionFeatures":
        network, info = load_fid_inception(path)
        return cls(network, resize=resize, weights=info)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)

    def settings(self) -> dict[str, Any]:
        """What must match between reference and generated features."""
        return {
            "features": self.name,
            "dim": self.dim,
            "resize": self.resize,
            "quantize": "uint8-round",
            "input_scaling": "(x-128)/128",
            "weights_sha256": self.weights.sha256 if self.weights else "",
            "weights_source": self.weights.source if self.weights else "",
            "weights_verified": self.weights.verified if self.weights else "unverified",
        }

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        device = next(self.network.parameters()).device
        x = prepare_inception_input(quantize_uint8(images), self.resize).to(device)
        return self.network(x).float()
