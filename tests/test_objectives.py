"""Objectives against hand-written scalar formulas on a tiny linear model.

Model (1-D data, 1-D latent): encoder μ = a·x, log σ² = b; decoder x̂ = c·z + d. The noise ε is
a fixed list, so every term can be written out by hand below (plain Python floats). Gradients
are checked against central finite differences of the hand formula, with the stop-gradients of
Algorithm 2 realised by holding the stopped values fixed — so a misplaced detach fails.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from genvae.core.interfaces import Batch, Decoder, Encoder, Models
from genvae.plugins.objectives.intro import IntroConfig, IntroVAE
from genvae.plugins.objectives.soft_intro import SoftIntroConfig, SoftIntroVAE
from genvae.plugins.objectives.vae import VAE, VAEConfig

F64 = torch.float64
X = [0.7, -1.3]
A, B, C, D = 0.8, -0.4, 1.5, 0.2


class LinEnc(Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(A, dtype=F64))
        self.b = nn.Parameter(torch.tensor(B, dtype=F64))
        self.latent_groups = {"z": 1}

    def forward(self, x, y=None):
        return self.a * x, self.b * torch.ones_like(x)


class LinDec(Decoder):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(C, dtype=F64))
        self.d = nn.Parameter(torch.tensor(D, dtype=F64))

    def forward(self, z, y=None):
        return self.c * z + self.d


class FixedNoise(Models):
    """Models whose randn_like returns prescribed values, in call order."""

    def __init__(self, enc, dec, noise):
        super().__init__(enc, dec, {"z": 1}, 1)
        self.noise = [torch.tensor(n, dtype=F64).reshape(-1, 1) for n in noise]

    def randn_like(self, t):
        out = self.noise.pop(0)
        assert out.shape == t.shape, (out.shape, t.shape)
        return out.to(t.dtype)


def kl(mu, logvar):
    return -0.5 * (1 + logvar - mu**2 - math.exp(logvar))


def rec_error(x, x_hat, kind="mse"):
    """L_rec of one 1-D sample: "mse" Σ (x̂ − x)² (the authors' code), "gaussian" the unit-variance
    Gaussian −log p(x|z) = ½ (x̂ − x)² + ½ log 2π."""
    return (x_hat - x) ** 2 if kind == "mse" else 0.5 * (x_hat - x) ** 2 + 0.5 * math.log(2 * math.pi)


def run_phase(objective, noise, phase_name, step=10**6):
    enc, dec = LinEnc(), LinDec()
    models = FixedNoise(enc, dec, noise)
    batch = Batch(torch.tensor(X, dtype=F64).reshape(-1, 1))
    ctx = objective.begin_step(batch, models, step=step)
    phase = next(p for p in objective.phases_at(step) if p.name == phase_name)
    for name, module in (("encoder", enc), ("decoder", dec)):
        module.requires_grad_(name in phase.trains)
    out = objective.phase_loss(phase, ctx, models)
    out.loss.backward()
    grads = {n: (p.grad.item() if p.grad is not None else None) for n, p in [*enc.named_parameters(), *dec.named_parameters()]}
    assert not models.noise, "noise left undrawn"
    return out.loss.item(), grads


def finite_difference(f, params, name, h=1e-6):
    up, down = dict(params), dict(params)
    up[name] += h
    down[name] -= h
    return (f(**up) - f(**down)) / (2 * h)


# ---------------------------------------------------------------------------------------- VAE


def vae_loss_by_hand(cfg, eps, a=A, b=B, c=C, d=D):
    """Eq. 1 (negated, β-weighted), batch mean: β_rec·L_rec(x, D(z)) + β_kl·KL(q(z|x) ‖ N(0, 1)), z = a·x + ε·e^{b/2}."""
    total = 0.0
    for x, e in zip(X, eps):
        z = a * x + e * math.exp(0.5 * b)
        total += cfg.beta_rec * rec_error(x, c * z + d, cfg.recon_loss) + cfg.beta_kl * kl(a * x, b)
    return total / len(X)


@pytest.mark.parametrize("recon", ["mse", "gaussian"])
def test_vae_loss_and_gradient_by_hand(recon):
    eps = [0.3, -0.5]
    cfg = VAEConfig(beta_rec=0.8, beta_kl=0.05, recon_loss=recon)
    loss = lambda a=A, b=B, c=C, d=D: vae_loss_by_hand(cfg, eps, a, b, c, d)  # noqa: E731

    value, grads = run_phase(VAE(cfg), [eps], "vae")
    assert value == pytest.approx(loss(), rel=1e-12)
    params = dict(a=A, b=B, c=C, d=D)
    for name in params:
        assert grads[name] == pytest.approx(finite_difference(loss, params, name), rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------------- Soft-IntroVAE

# noise order: ε for Z (begin_step), Z_f (begin_step), ε for Z_rf, then for Z_ff (phase)
EPS_Z, Z_PRIOR, EPS_FAKES = [0.3, -0.5], [1.1, -0.2], [0.4, 0.9, -1.2, 0.05]
SOFT = SoftIntroConfig(beta_rec=0.7, beta_kl=0.3, beta_neg=2.0, gamma_r=0.25, scale=0.5)


def soft_intro_encoder_loss(a=A, b=B, c=C, d=D, fakes=None, targets=None, cfg=SOFT):
    """Alg. 2 lines 8-17, minimised. ``fakes`` are the encoder's inputs (X_r, X_f), ``targets`` the
    first argument of L_rec(X_r, X_rf); passing fixed values realises a stop-gradient."""
    s, rec = cfg.scale, cfg.recon_loss
    zs = [a * x + e * math.exp(0.5 * b) for x, e in zip(X, EPS_Z)]
    x_rec = [c * z + d for z in zs]
    real = sum(cfg.beta_rec * rec_error(x, xr, rec) + cfg.beta_kl * kl(a * x, b) for x, xr in zip(X, x_rec)) / 2
    inputs = [*fakes[0], *fakes[1]]
    targets = inputs if targets is None else [*targets[0], *targets[1]]
    neg = []
    for xin, target, e in zip(inputs, targets, EPS_FAKES):
        z = a * xin + e * math.exp(0.5 * b)
        neg.append(cfg.beta_rec * rec_error(target, c * z + d, rec) + cfg.beta_neg * kl(a * xin, b))
    exp_r = 0.5 * sum(math.exp(-2 * s * v) for v in neg[:2]) / 2
    exp_f = 0.5 * sum(math.exp(-2 * s * v) for v in neg[2:]) / 2
    return s * real + 0.5 * (exp_r + exp_f)


def soft_intro_fakes(a=A, b=B, c=C, d=D):
    zs = [a * x + e * math.exp(0.5 * b) for x, e in zip(X, EPS_Z)]
    return [c * z + d for z in zs], [c * z + d for z in Z_PRIOR]


def encoder_loss_with_stop_gradients(mode, cfg=SOFT):
    """The encoder-phase loss as a function of (a, b), with X_r held fixed where ``mode`` stops it."""
    fixed = soft_intro_fakes()

    def loss(a, b):
        moving = (soft_intro_fakes(a, b)[0], fixed[1])  # X_f never depends on the encoder
        fakes = moving if mode == "full" else fixed
        targets = fixed if mode == "none" else moving
        return soft_intro_encoder_loss(a=a, b=b, fakes=fakes, targets=targets, cfg=cfg)

    return loss


@pytest.mark.parametrize("recon", ["mse", "gaussian"])
@pytest.mark.parametrize("mode", ["full", "target", "none"])
def test_soft_intro_encoder_phase_by_hand(mode, recon):
    cfg = SoftIntroConfig(**{**SOFT.__dict__, "encoder_fake_grad": mode, "recon_loss": recon})
    value, grads = run_phase(SoftIntroVAE(cfg), [EPS_Z, Z_PRIOR, EPS_FAKES[:2], EPS_FAKES[2:]], "encoder")
    f = encoder_loss_with_stop_gradients(mode, cfg)
    assert value == pytest.approx(f(A, B), rel=1e-12)
    params = dict(a=A, b=B)
    for name in params:
        assert grads[name] == pytest.approx(finite_difference(f, params, name), rel=1e-6)
    # the encoder phase gives the decoder no gradient
    assert grads["c"] is None and grads["d"] is None


def test_the_stop_gradient_modes_really_differ():
    grads = {m: run_phase(SoftIntroVAE(SoftIntroConfig(**{**SOFT.__dict__, "encoder_fake_grad": m})), [EPS_Z, Z_PRIOR, EPS_FAKES[:2], EPS_FAKES[2:]], "encoder")[1]["a"] for m in ("full", "target", "none")}
    assert len({round(g, 9) for g in grads.values()}) == 3
    with pytest.raises(Exception, match="encoder_fake_grad must be one of full, target, none"):
        SoftIntroConfig(encoder_fake_grad="some")


def soft_intro_decoder_loss(a=A, b=B, c=C, d=D, mode="fakes", cfg=SOFT):
    """Alg. 2 lines 20-27, minimised. Z_rf, Z_ff are E(X_r), E(X_f) at the weights of the call
    (A, B, C, D); "fakes" (line 23) holds their decodings sg(D(Z_rf)) fixed, "reconstructions"
    (the authors' code) holds the targets sg(X_r), sg(X_f) fixed and decodes the fixed codes."""
    s, rec = cfg.scale, cfg.recon_loss
    zs = [A * x + e * math.exp(0.5 * B) for x, e in zip(X, EPS_Z)]  # Z from the encoder: constant
    x_rec = [c * z + d for z in zs]
    x_fake = [c * z + d for z in Z_PRIOR]
    real = sum(cfg.beta_rec * rec_error(x, xr, rec) for x, xr in zip(X, x_rec)) / 2
    fixed = [*soft_intro_fakes()[0], *soft_intro_fakes()[1]]
    codes = [A * x0 + e * math.exp(0.5 * B) for x0, e in zip(fixed, EPS_FAKES)]
    terms = []
    for xin, x0, z in zip([*x_rec, *x_fake], fixed, codes):
        target, reconstructed = (xin, C * z + D) if mode == "fakes" else (x0, c * z + d)
        terms.append(cfg.gamma_r * cfg.beta_rec * rec_error(target, reconstructed, rec) + cfg.beta_kl * kl(a * xin, b))
    return s * (real + 0.5 * (sum(terms[:2]) / 2 + sum(terms[2:]) / 2))


@pytest.mark.parametrize("recon", ["mse", "gaussian"])
@pytest.mark.parametrize("mode", ["fakes", "reconstructions"])
def test_soft_intro_decoder_phase_by_hand(mode, recon):
    cfg = SoftIntroConfig(**{**SOFT.__dict__, "decoder_fake_grad": mode, "recon_loss": recon})
    value, grads = run_phase(SoftIntroVAE(cfg), [EPS_Z, Z_PRIOR, EPS_FAKES[:2], EPS_FAKES[2:]], "decoder")
    assert value == pytest.approx(soft_intro_decoder_loss(mode=mode, cfg=cfg), rel=1e-12)
    params = dict(c=C, d=D)
    f = lambda c, d: soft_intro_decoder_loss(c=c, d=d, mode=mode, cfg=cfg)  # noqa: E731
    for name in params:
        assert grads[name] == pytest.approx(finite_difference(f, params, name), rel=1e-6)
    assert grads["a"] is None and grads["b"] is None  # the decoder phase gives the encoder no gradient


def test_the_decoder_stop_gradient_modes_really_differ():
    noise = lambda: [EPS_Z, Z_PRIOR, EPS_FAKES[:2], EPS_FAKES[2:]]  # noqa: E731
    grads = [run_phase(SoftIntroVAE(SoftIntroConfig(**{**SOFT.__dict__, "decoder_fake_grad": m})), noise(), "decoder")[1]["c"] for m in ("fakes", "reconstructions")]
    assert abs(grads[0] - grads[1]) > 1e-3
    with pytest.raises(Exception, match="decoder_fake_grad must be one of fakes, reconstructions"):
        SoftIntroConfig(decoder_fake_grad="some")


# ------------------------------------------------------------------------------------ IntroVAE

INTRO = IntroConfig(beta_rec=0.3, beta_kl=0.5, beta_neg=1.5, m=1.2)
EPS_Z_INTRO, Z_PRIOR_INTRO = [0.3, -0.5], [1.1, -0.2]


def intro_loss(phase, a=A, b=B, c=C, d=D, fakes=None, cfg=INTRO):
    zs = [A * x + e * math.exp(0.5 * B) for x, e in zip(X, EPS_Z_INTRO)] if phase == "decoder" else [
        a * x + e * math.exp(0.5 * b) for x, e in zip(X, EPS_Z_INTRO)
    ]
    x_rec = [c * z + d for z in zs]
    rec = sum(rec_error(x, xr, cfg.recon_loss) for x, xr in zip(X, x_rec)) / 2
    if fakes is None:
        fakes = (x_rec, [c * z + d for z in Z_PRIOR_INTRO])
    kls = [kl(a * xin, b) for xin in [*fakes[0], *fakes[1]]]
    if phase == "encoder":
        real_kl = sum(kl(a * x, b) for x in X) / 2
        if cfg.margin == "batch":  # hinge of each half's mean KL
            hinge = max(cfg.m - sum(kls[:2]) / 2, 0.0) + max(cfg.m - sum(kls[2:]) / 2, 0.0)
        else:  # mean of the per-sample hinges
            margins = [max(cfg.m - k, 0.0) for k in kls]
            hinge = sum(margins[:2]) / 2 + sum(margins[2:]) / 2
        return cfg.beta_rec * rec + cfg.beta_kl * real_kl + cfg.beta_neg * 0.5 * hinge
    return cfg.beta_rec * rec + cfg.beta_neg * 0.5 * (sum(kls[:2]) / 2 + sum(kls[2:]) / 2)


@pytest.mark.parametrize("margin, recon", [("sample", "mse"), ("batch", "mse"), ("sample", "gaussian")])
@pytest.mark.parametrize("phase", ["encoder", "decoder"])
def test_intro_by_hand(phase, margin, recon):
    cfg = dataclasses.replace(INTRO, margin=margin, recon_loss=recon)
    value, grads = run_phase(IntroVAE(cfg), [EPS_Z_INTRO, Z_PRIOR_INTRO], phase)
    if phase == "encoder":
        zs = [A * x + e * math.exp(0.5 * B) for x, e in zip(X, EPS_Z_INTRO)]
        fakes = ([C * z + D for z in zs], [C * z + D for z in Z_PRIOR_INTRO])
        f = lambda a, b: intro_loss("encoder", a=a, b=b, fakes=fakes, cfg=cfg)  # noqa: E731
        params = dict(a=A, b=B)
        assert grads["c"] is None and grads["d"] is None
        # with these values some fakes are past the margin and some not, so the two hinges differ
        other = dataclasses.replace(cfg, margin="batch" if margin == "sample" else "sample")
        assert abs(f(A, B) - intro_loss("encoder", fakes=fakes, cfg=other)) > 1e-3
    else:
        f = lambda c, d: intro_loss("decoder", c=c, d=d, cfg=cfg)  # noqa: E731
        params = dict(c=C, d=D)
        assert grads["a"] is None and grads["b"] is None
    assert value == pytest.approx(f(**params), rel=1e-12)
    for name in params:
        assert grads[name] == pytest.approx(finite_difference(f, params, name), rel=1e-6, abs=1e-10)


# ------------------------------------------------------------------------------- VAE warm-up


@pytest.mark.parametrize("recon", ["mse", "gaussian"])
@pytest.mark.parametrize("kind", ["soft-intro", "intro"])
def test_warmup_is_the_beta_vae_of_the_objectives_betas_for_num_vae_steps(kind, recon):
    """Steps 0 .. num_vae − 1 train encoder and decoder jointly on the β-VAE loss with the
    objective's own β_rec, β_kl and L_rec (the authors' code: ``if epoch < num_vae``); from step
    num_vae on, the encoder phase (Alg. 2 lines 8-19) comes before the decoder phase (20-29)."""
    base, make = (SOFT, SoftIntroVAE) if kind == "soft-intro" else (INTRO, IntroVAE)
    cfg = dataclasses.replace(base, num_vae=5, recon_loss=recon)
    objective = make(cfg)
    assert [(p.name, p.trains) for p in objective.phases_at(4)] == [("vae", ("encoder", "decoder"))]
    assert [(p.name, p.trains) for p in objective.phases_at(5)] == [("encoder", ("encoder",)), ("decoder", ("decoder",))]

    eps = [0.3, -0.5]
    value, grads = run_phase(objective, [eps], "vae", step=4)
    loss = lambda a=A, b=B, c=C, d=D: vae_loss_by_hand(cfg, eps, a, b, c, d)  # noqa: E731
    assert value == pytest.approx(loss(), rel=1e-12)
    params = dict(a=A, b=B, c=C, d=D)
    for name in params:
        assert grads[name] == pytest.approx(finite_difference(loss, params, name), rel=1e-6, abs=1e-9)
    # the first step after the warm-up is the introspective encoder phase, the same as any later step
    noise = [EPS_Z, Z_PRIOR, EPS_FAKES[:2], EPS_FAKES[2:]] if kind == "soft-intro" else [EPS_Z_INTRO, Z_PRIOR_INTRO]
    first, _ = run_phase(objective, [list(n) for n in noise], "encoder", step=5)
    assert first == pytest.approx(run_phase(objective, [list(n) for n in noise], "encoder")[0], rel=1e-12)
