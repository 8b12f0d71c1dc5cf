"""The shared math: KL, reconstruction, and the overflow-safe expELBO."""

import math

import pytest
import torch

from genvae.core.losses import exp_elbo, kl_per_group, kl_standard_normal, mean_exp, reconstruction_error, weighted_kl
from genvae.errors import ConfigError


def test_kl_matches_closed_form_and_torch_distributions():
    mu = torch.tensor([[0.5, -1.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.2, -0.3], [0.0, 0.0]])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(kl_standard_normal(mu, logvar), expected, atol=1e-6)
    assert kl_standard_normal(mu, logvar)[1] == 0


def test_kl_per_group_splits_and_weights():
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    groups = {"class": 2, "content": 3}
    kls = kl_per_group(mu, logvar, groups)
    assert torch.allclose(kls["class"] + kls["content"], kl_standard_normal(mu, logvar), atol=1e-6)
    weighted = weighted_kl(mu, logvar, groups, {"class": 2.0, "content": 0.5})
    assert torch.allclose(weighted, 2 * kls["class"] + 0.5 * kls["content"], atol=1e-6)
    with pytest.raises(ConfigError, match="no weight for latent group 'content'"):
        weighted_kl(mu, logvar, groups, {"class": 1.0})


def test_reconstruction_errors():
    x = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    x_rec = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    assert reconstruction_error(x, x_rec, "mse").tolist() == [0.5, 0.0]
    gauss = reconstruction_error(x, x_rec, "gaussian")
    # −log N(x; x_rec, I) = ½ Σ (x − x_rec)² + ½·D·log 2π with D = 2: ½·(0.25 + 0.25) + log 2π
    assert gauss.tolist() == pytest.approx([0.25 + math.log(2 * math.pi), math.log(2 * math.pi)], rel=1e-6)
    bce = reconstruction_error(x, x_rec, "bce")
    assert bce[0].item() == pytest.approx(2 * math.log(2), rel=1e-6)
    with pytest.raises(ConfigError, match="unknown reconstruction loss 'l1'"):
        reconstruction_error(x, x_rec, "l1")


def test_mean_exp_equals_naive_value_and_gradient_where_finite():
    u = torch.tensor([-3.0, 0.5, 10.0, -50.0], requires_grad=True)
    v = u.detach().clone().requires_grad_(True)
    mean_exp(u).backward()
    v.exp().mean().backward()
    assert mean_exp(u).item() == pytest.approx(v.exp().mean().item(), rel=1e-6)
    assert torch.allclose(u.grad, v.grad, rtol=1e-6)


def test_mean_exp_stays_finite_where_naive_overflows():
    u = torch.tensor([100.0, 200.0, 0.0], requires_grad=True)
    assert torch.isinf(u.detach().exp().mean())
    value = mean_exp(u)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(u.grad).all()
    assert (u.grad >= 0).all() and u.grad[1] > 0  # still pushes the largest term
    # monotone beyond the cap
    assert mean_exp(torch.tensor([300.0])) > mean_exp(torch.tensor([200.0]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_exp_elbo_in_low_precision_is_computed_in_float32(dtype):
    neg_elbo = torch.tensor([-3000.0, 5.0, 1e4], dtype=dtype)  # a positive ELBO of 3000 nats
    value = exp_elbo(neg_elbo, scale=1 / 2)
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_exp_elbo_is_half_mean_exp_of_twice_scaled_elbo():
    neg_elbo = torch.tensor([1.0, 2.0, 3.0])
    s = 0.25
    expected = 0.5 * torch.exp(-2 * s * neg_elbo).mean()
    assert exp_elbo(neg_elbo, s).item() == pytest.approx(expected.item(), rel=1e-6)
