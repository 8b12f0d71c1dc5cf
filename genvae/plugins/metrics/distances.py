"""Distances between two sets of image features (the numbers ``genvae eval fid`` reports).

- **Fréchet distance** ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½, in float64 with
  symmetric eigendecompositions (eigenvalues clipped at 0): no complex parts, no
  ``scipy.linalg.sqrtm(disp=False)`` failures on singular covariances. The result is clipped at 0.
- **KID** (Bińkowski et al. 2018) as torch-fidelity: unbiased MMD² with the cubic polynomial
  kernel (x·y/d + 1)³, mean and std over ``subsets`` random subsets of ``subset_size``,
  NumPy ``RandomState(2020)``.
- **Precision / recall** (Kynkäänniemi et al. 2019), k = 3: a generated sample is precise if it
  lies within the k-NN radius of some real sample; a real sample is recalled if it lies within the
  k-NN radius of some generated sample (torch-fidelity's definition).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from genvae.errors import DataError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity's rng_seed
PR_NEIGHBORHOOD = 3


def as_float64(features: np.ndarray | Tensor) -> np.ndarray:
    """A float64 NumPy copy of features given as an array or a (any-device) tensor."""
    return np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)


def feature_statistics(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, unbiased as ``np.cov``) of features (N, d)."""
    f = as_float64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise DataError(f"need at least 2 feature vectors for statistics, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition (eigenvalues
    clipped at 0)."""
    a = np.asarray(a, dtype=np.float64)
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½ (float64; the eigenvalues of Σ₁^½ Σ₂ Σ₁^½
    are those of Σ₁Σ₂, so the last trace is tr (Σ₁Σ₂)^½). Clipped at 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise DataError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    root1 = sqrtm_psd(s1)
    middle = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (middle + middle.T)), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def _mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features_gen: np.ndarray | Tensor,
    features_real: np.ndarray | Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = KID_SEED,
    degree: int = 3,
    coef0: float = 1.0,
) -> tuple[float, float, int]:
    """KID mean and std over subsets, and the subset size used (reduced to the smaller set's size)."""
    f1 = as_float64(features_gen)
    f2 = as_float64(features_real)
    size = min(subset_size, len(f1), len(f2))
    if size < 2:
        raise DataError("KID needs at least 2 feature vectors on each side")
    gamma = 1.0 / f1.shape[1]
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), size, replace=False)]
        y = f2[rng.choice(len(f2), size, replace=False)]
        k = lambda a, b: (a @ b.T * gamma + coef0) ** degree  # noqa: E731
        mmds[i] = _mmd2_unbiased(k(x, x), k(x, y), k(y, y))
    return float(mmds.mean()), float(mmds.std()), size


def _knn_radii(f: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of each row of ``f`` to its k-th nearest neighbour in ``f`` (itself excluded)."""
    return torch.cat([torch.cdist(rows, f).kthvalue(k + 1, dim=1).values for rows in f.split(chunk)])


def _covered(queries: Tensor, centres: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """For each query: does it lie within ``radii[j]`` of some centre j?"""
    return torch.cat([(torch.cdist(rows, centres) <= radii.unsqueeze(0)).any(dim=1) for rows in queries.split(chunk)])


def precision_recall(features_gen: np.ndarray | Tensor, features_real: np.ndarray | Tensor, k: int = PR_NEIGHBORHOOD, chunk: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls, float64."""
    gen = torch.as_tensor(as_float64(features_gen))
    real = torch.as_tensor(as_float64(features_real))
    if len(gen) <= k or len(real) <= k:
        raise DataError(f"precision / recall with k={k} needs more than {k} samples on each side")
    precision = _covered(gen, real, _knn_radii(real, k, chunk), chunk).double().mean().item()
    recall = _covered(real, gen, _knn_radii(gen, k, chunk), chunk).double().mean().item()
    return precision, recall

