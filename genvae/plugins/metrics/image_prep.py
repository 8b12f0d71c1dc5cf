"""Images made ready for a feature extractor, as the FID tools do: rounded to uint8, grey
repeated to RGB, resized with TensorFlow 1's bilinear rule (pytorch-fid's and torch-fidelity's
Inception graph) or clean-fid's PIL bicubic.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from genvae.errors import DataError

RESIZE_MODES = ("tf1-bilinear", "pil-bicubic")


def quantize_uint8(x: Tensor) -> Tensor:
    """Float images in [0, 1] → uint8 by rounding (values outside [0, 1] are clipped)."""
    return (x.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def to_rgb(x: Tensor) -> Tensor:
    """(N, 1 or 3, H, W) → (N, 3, H, W); grey images are repeated over the channels."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def resize_tf1_bilinear(x: Tensor, size: int) -> Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)`` of float (N, C, H, W) images:
    source coordinate = dst · (in / out), neighbours floor and floor + 1 (clamped)."""
    n, c, h, w = x.shape
    if (h, w) == (size, size):
        return x

    def axis(in_size: int) -> tuple[Tensor, Tensor, Tensor]:
        pos = torch.arange(size, dtype=torch.float32, device=x.device) * torch.tensor(in_size / size, dtype=torch.float32)
        lo = pos.long()
        hi = (lo + 1).clamp(max=in_size - 1)
        return lo, hi, (pos - lo.float()).to(x.dtype)

    y_lo, y_hi, dy = axis(h)
    x_lo, x_hi, dx = axis(w)
    top, bottom = x[:, :, y_lo, :], x[:, :, y_hi, :]
    top = top[..., x_lo] + (top[..., x_hi] - top[..., x_lo]) * dx
    bottom = bottom[..., x_lo] + (bottom[..., x_hi] - bottom[..., x_lo]) * dx
    return top + (bottom - top) * dy.view(1, 1, size, 1)


def resize_pil_bicubic(x: Tensor, size: int) -> Tensor:
    """clean-fid's resize: each channel a float32 PIL image, ``Image.BICUBIC``, clipped to [0, 255]."""
    from PIL import Image

    if tuple(x.shape[-2:]) == (size, size):
        return x
    arrays = x.detach().cpu().to(torch.float32).numpy()
    out = np.empty((*arrays.shape[:2], size, size), dtype=np.float32)
    for i in range(arrays.shape[0]):
        for c in range(arrays.shape[1]):
            image = Image.fromarray(arrays[i, c], mode="F").resize((size, size), resample=Image.BICUBIC)
            out[i, c] = np.asarray(image).clip(0, 255)
    return torch.from_numpy(out).to(x.device)
