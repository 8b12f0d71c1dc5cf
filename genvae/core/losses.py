"""The shared math, written once: KL, reconstruction error, ELBO terms, expELBO.

Conventions: every per-sample function returns a tensor of shape (batch,); "negative ELBO"
is the loss β_rec·L_rec + β_kl·KL (the paper's ELBO(β_rec, β_kl, X, X_r, Z) with its sign
flipped, Alg. 2 lines 32-35).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from genvae.errors import ConfigError, PluginError

# Group weights (beta_kl, beta_neg) may be one number or one number per latent group.
GroupWeight = float | Mapping[str, float]


def reparameterize(mu: Tensor, logvar: Tensor, randn_like: Callable[[Tensor], Tensor] = torch.randn_like) -> Tensor:
    """z = μ + σ·ε, ε ~ N(0, I) (the reparametrization trick); ε from ``randn_like``."""
    return mu + randn_like(mu) * torch.exp(0.5 * logvar)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample: −½ Σ_j (1 + log σ²_j − μ²_j − σ²_j)."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def kl_per_group(mu: Tensor, logvar: Tensor, groups: Mapping[str, int]) -> dict[str, Tensor]:
    """One KL per latent group; groups lie side by side along dim 1 in the given order."""
    if len(groups) == 1:
        return {next(iter(groups)): kl_standard_normal(mu, logvar)}
    out: dict[str, Tensor] = {}
    start = 0
    for name, size in groups.items():
        out[name] = kl_standard_normal(mu[:, start : start + size], logvar[:, start : start + size])
        start += size
    return out


def weighted_kl(mu: Tensor, logvar: Tensor, groups: Mapping[str, int], beta: GroupWeight) -> Tensor:
    """Σ_g β_g · KL_g per sample (β a number, or a number per group)."""
    kls = kl_per_group(mu, logvar, groups)
    return sum(group_weight(beta, name) * kl for name, kl in kls.items())  # type: ignore[return-value]


def group_weight(beta: GroupWeight, group: str) -> float | Tensor:
    """β of one latent group. A tensor passes through unchanged (per-member β in batched runs)."""
    if isinstance(beta, Mapping):
        if group not in beta:
            raise ConfigError(f"no weight for latent group {group!r} in {dict(beta)}; give one per group or a single number")
        beta = beta[group]
    return beta if isinstance(beta, Tensor) else float(beta)


def mse_error(x: Tensor, x_rec: Tensor) -> Tensor:
    """Σ (x − x_rec)², as the authors' code (a Gaussian likelihood with variance ½, no constant)."""
    return (x_rec - x).pow(2).flatten(1).sum(dim=1)


def gaussian_error(x: Tensor, x_rec: Tensor) -> Tensor:
    """½ Σ (x − x_rec)² + ½·D·log 2π: the unit-variance Gaussian negative log-likelihood."""
    return 0.5 * (x_rec - x).pow(2).flatten(1).sum(dim=1) + 0.5 * x[0].numel() * math.log(2 * math.pi)


def bce_error(x: Tensor, x_rec: Tensor) -> Tensor:
    """Σ BCE(x_rec, x): the Bernoulli negative log-likelihood; x_rec must lie in [0, 1]."""
    return F.binary_cross_entropy(x_rec.float(), x.float(), reduction="none").flatten(1).sum(dim=1)


RECONSTRUCTION_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse_error,
    "gaussian": gaussian_error,
    "bce": bce_error,
}


def reconstruction_loss(kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The reconstruction loss named ``kind``: a built-in or one registered by a plugin."""
    if kind in RECONSTRUCTION_LOSSES:
        return RECONSTRUCTION_LOSSES[kind]
    from genvae.core.plugins import get_plugins  # plugins import this module: resolve at call time

    losses = get_plugins().losses
    if kind not in losses:
        from genvae.core.registry import unknown_name_message

        raise ConfigError(unknown_name_message("reconstruction loss", kind, sorted({*RECONSTRUCTION_LOSSES, *losses.names()}), losses.broken))
    return losses.get(kind)


def reconstruction_error(x: Tensor, x_rec: Tensor, kind: str = "mse") -> Tensor:
    """L_rec(x, x_rec) = −log p(x|z) up to a constant, per sample (summed over non-batch dims).
    A loss plugin must return one value per sample: anything else would broadcast silently."""
    error = reconstruction_loss(kind)(x, x_rec)
    if not isinstance(error, Tensor) or tuple(error.shape) != (x.shape[0],):
        got = tuple(error.shape) if isinstance(error, Tensor) else type(error).__name__
        raise PluginError(f"reconstruction loss {kind!r} returned {got} for a batch of {x.shape[0]}; it must return one value per sample, "
                          f"shape ({x.shape[0]},) (sum over the other dimensions: .flatten(1).sum(1))")  # fmt: skip
    return error


def negative_elbo(
    x: Tensor,
    x_rec: Tensor,
    mu: Tensor,
    logvar: Tensor,
    groups: Mapping[str, int],
    beta_rec: float,
    beta_kl: GroupWeight,
    recon: str = "mse",
) -> Tensor:
    """β_rec·L_rec(x, x_rec) + Σ_g β_kl,g·KL_g per sample (= −ELBO, Alg. 2 line 33)."""
    return beta_rec * reconstruction_error(x, x_rec, recon) + weighted_kl(mu, logvar, groups, beta_kl)


# exp(u) is computed exactly up to this exponent (exp(U_MAX) ≈ 8e35); above it the value grows
# only logarithmically, exp(U_MAX)·(1 + log(1 + u − U_MAX)), which stays below float32's maximum
# (3.4e38, reached by exp at u ≈ 88.7) for every finite u, with a positive, finite slope.
U_MAX = math.log(torch.finfo(torch.float32).max) - 6.0


def _exp_capped(u: Tensor) -> Tensor:
    """exp(u) for u ≤ U_MAX, a finite, continuous, increasing continuation above."""
    excess = (u - U_MAX).clamp(min=0.0)
    return torch.exp(u.clamp(max=U_MAX)) * (1.0 + torch.log1p(excess))


def mean_exp(u: Tensor) -> Tensor:
    """mean_i exp(u_i), computed as exp(logsumexp(u) − log n) in at least float32.

    Same value and gradient (∂/∂u_i = exp(u_i)/n) as ``u.exp().mean()`` wherever the mean is at most
    exp(U_MAX) ≈ 8e35;
    where it would overflow, the result stays finite (see ``_exp_capped``) and never NaN.
    """
    u = (u.float() if u.dtype in (torch.float16, torch.bfloat16) else u).reshape(-1)
    return _exp_capped(torch.logsumexp(u, dim=0) - math.log(u.numel()))


def exp_elbo(neg_elbo: Tensor, scale: float) -> Tensor:
    """expELBO = ½·exp(2s·ELBO), averaged over the batch (Alg. 2 lines 15-16; α = 2 as the paper)."""
    return 0.5 * mean_exp(-2.0 * scale * neg_elbo)


def log_key(prefix: str, group: str, groups: Mapping[str, int]) -> str:
    """Name of a per-group logged value: ``kl`` for a single group, ``kl_<group>`` otherwise."""
    return prefix if len(groups) == 1 else f"{prefix}_{group}"
