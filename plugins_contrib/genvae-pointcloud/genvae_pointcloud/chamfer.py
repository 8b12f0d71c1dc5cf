"""The symmetric Chamfer distance, as a genvae reconstruction loss (``objective.recon_loss=chamfer``).

For point sets X = {x_i} (N points) and Y = {y_j} (M points), per sample::

    CD(X, Y) = Σ_i min_j ‖x_i − y_j‖² + Σ_j min_i ‖x_i − y_j‖²

Squared Euclidean distances, *summed* (not averaged) over the points of both sets, as the
authors' 3-D code (3D-AAE's ``ChamferLoss``, which also sums, over the batch as well).

Scale: genvae's reconstruction losses are −log p(x|z) per sample summed over the input's
dimensions (``mse`` = Σ (x − x_rec)²), and Soft-IntroVAE's s = 1 / dim (dim = 3N here) rescales the
ELBO. The summed Chamfer distance lives on the same scale: when ``x_rec`` lists the same points
as ``x`` in the same order with small errors, every nearest neighbour is at most as far as the
point's own partner, so CD ≤ 2·mse — β_rec, β_kl and β_neg keep the meaning they have with
``mse``. It is order-free (a permutation of either set gives the same value), which ``mse`` is
not: a decoder's point order is arbitrary.

Distances come from ``torch.cdist`` computed directly (not through the matrix-multiplication
form ‖x‖² + ‖y‖² − 2x·y, which loses precision near zero and was slower here); memory B × N × M.
"""

from __future__ import annotations

import torch
from torch import Tensor


def chamfer_distance(x: Tensor, x_rec: Tensor) -> Tensor:
    """Symmetric squared Chamfer distance per sample: (B, N, 3), (B, M, 3) -> (B,)."""
    if x.dim() != 3 or x_rec.dim() != 3 or x.shape[0] != x_rec.shape[0] or x.shape[-1] != x_rec.shape[-1]:
        raise ValueError(f"chamfer: expected point clouds (batch, points, dims) with equal batch and dims, got {tuple(x.shape)} and {tuple(x_rec.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):  # half-precision squared distances lose too much
        x = x.float()
    x_rec = x_rec.to(x.dtype)
    d = torch.cdist(x, x_rec, compute_mode="donot_use_mm_for_euclid_dist").square()  # (B, N, M)
    return d.min(dim=2).values.sum(dim=1) + d.min(dim=1).values.sum(dim=1)
