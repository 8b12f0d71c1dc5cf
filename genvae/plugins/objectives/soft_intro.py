"""Soft-IntroVAE (Daniel & Tamar, CVPR 2021): Algorithm 2 of the paper, line by line.

All losses here are minimised, so each is the negative of the quantity Algorithm 2 ascends:
the paper's ELBO(β_rec, β_kl, X, X_r, Z) = −(β_rec·L_rec(X, X_r) + β_kl·KL(Z)) (lines 32-35)
appears as ``neg_elbo``. Per-sample terms are averaged over the batch (the expectation
of Eq. 5).

Stop-gradients
- Decoder phase: X_rf = sg(D(Z_rf)), X_ff = sg(D(Z_ff)) (line 23), exactly as Algorithm 2, so
  the γ_r term L_rec(X_f, X_ff) reaches the decoder through the fakes X_r, X_f
  (``decoder_fake_grad = "fakes"``, the default). The authors' code stops the other side:
  L_rec(sg(X_f), D(sg(Z_ff))), the decoder learning to reconstruct its fakes from their codes
  (``"reconstructions"``). With the paper's γ_r = 1e-8 the two cannot differ measurably.
- Encoder phase: Algorithm 2 has no sg(), so the expELBO's gradient also reaches the encoder
  *through* the reconstructions X_r = D(E(X)) (``encoder_fake_grad = "full"``, the default).
  The authors' code differs: it feeds E a detached X_r but keeps X_r's gradient in the target of
  L_rec(X_r, X_rf) (``"target"``); IntroVAE (ref. [26], Alg. 1: Enc(ng(X_r))) and Eq. 4, where a
  fake is a sample of the decoder, detach it entirely (``"none"``). Prior samples X_f = D(Z_f)
  never depend on the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Batch, Models, Objective, Phase, PhaseOutput
from genvae.core.losses import (
    GroupWeight,
    exp_elbo,
    kl_per_group,
    log_key,
    negative_elbo,
    reconstruction_error,
    reparameterize,
    weighted_kl,
)
from genvae.plugins.objectives.vae import vae_loss
from genvae.errors import ConfigError

ENCODER_PHASE = Phase("encoder", trains=("encoder",))
DECODER_PHASE = Phase("decoder", trains=("decoder",))
VAE_WARMUP_PHASE = Phase("vae", trains=("encoder", "decoder"))
ENCODER_FAKE_GRAD = ("full", "target", "none")
DECODER_FAKE_GRAD = ("fakes", "reconstructions")


@dataclass
class SoftIntroConfig:
    beta_rec: float = 1.0  # β_rec: weight of every reconstruction term
    beta_kl: GroupWeight = 1.0  # β_kl: KL weight of real data (both phases) and of fakes (decoder)
    beta_neg: GroupWeight = 256.0  # β_neg: KL weight inside the encoder's expELBO (repulsion)
    gamma_r: float = 1e-8  # γ_r: weight of the fakes' reconstruction term for the decoder
    num_vae: int = 0  # steps of plain-VAE warm-up before the introspective game starts
    recon_loss: str = "mse"  # mse | bce | gaussian
    scale: float = 0.0  # s; 0 means 1 / input dimension (Alg. 2 line 3)
    encoder_fake_grad: str = "full"  # gradient through X_r in the encoder phase: full | target | none
    decoder_fake_grad: str = "fakes"  # γ_r term in the decoder phase, gradient through: fakes | reconstructions

    def __post_init__(self) -> None:
        if self.encoder_fake_grad not in ENCODER_FAKE_GRAD:
            raise ConfigError(f"objective.encoder_fake_grad must be one of {', '.join(ENCODER_FAKE_GRAD)}, got {self.encoder_fake_grad!r}")
        if self.decoder_fake_grad not in DECODER_FAKE_GRAD:
            raise ConfigError(f"objective.decoder_fake_grad must be one of {', '.join(DECODER_FAKE_GRAD)}, got {self.decoder_fake_grad!r}")


def encode_and_draw_prior(batch: Batch, models: Models) -> dict[str, Any]:
    """The step's shared context of the introspective objectives (Alg. 2 lines 5-7): the batch,
    the posterior ``mu``, ``logvar`` and a sample ``z`` of it, and ``z_prior`` ~ N(0, I)."""
    mu, logvar = models.encode(batch.x, batch.y)  # line 6: Z <- E(X)
    z = reparameterize(mu, logvar, models.randn_like)
    z_prior = models.randn_like(mu)  # line 7: Z_f ~ N(0, I)
    return {"batch": batch, "mu": mu, "logvar": logvar, "z": z, "z_prior": z_prior}


class SoftIntroVAE(Objective):
    """Soft-IntroVAE: an encoder phase (Alg. 2 lines 8-19), then a decoder phase (lines 20-29)."""

    Config = SoftIntroConfig
    phases = (ENCODER_PHASE, DECODER_PHASE)

    def phases_at(self, step: int) -> tuple[Phase, ...]:
        return (VAE_WARMUP_PHASE,) if step < self.config.num_vae else self.phases

    def scale(self, models: Models) -> float:
        return self.config.scale or 1.0 / models.data_dim

    def begin_step(self, batch: Batch, models: Models, step: int) -> dict[str, Any]:
        return {"batch": batch} if step < self.config.num_vae else encode_and_draw_prior(batch, models)

    def phase_loss(self, phase: Phase, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        c = self.config
        if phase.name == "vae":
            return vae_loss(ctx["batch"], models, c.beta_rec, c.beta_kl, c.recon_loss)
        if phase.name == "encoder":
            return self.encoder_loss(ctx, models)
        return self.decoder_loss(ctx, models)

    def fakes_through_model(self, x_fakes: torch.Tensor, y: torch.Tensor | None, models: Models, decode: str):
        """Lines 10-11 / 22-23: Z_rf, Z_ff <- E(X_r), E(X_f); X_rf, X_ff <- D(Z_rf), D(Z_ff).
        ``decode``: "full" (encoder phase), "none" (line 23: sg(D(Z_rf))) or "weights" (the
        authors' code: D(sg(Z_rf)), only the decoder's weights get a gradient). Variants override this."""
        mu, logvar = models.encode(x_fakes, y)
        z = reparameterize(mu, logvar, models.randn_like)
        if decode == "none":
            with torch.no_grad():  # line 23: sg(D(Z_rf)), sg(D(Z_ff))
                return mu, logvar, models.decode(z, y)
        return mu, logvar, models.decode(z.detach() if decode == "weights" else z, y)

    def fake_elbos(
        self, inputs: torch.Tensor, targets: torch.Tensor, y: torch.Tensor | None, models: Models,
        decode: str, rec_weight: float, kl_weight: GroupWeight,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-sample −ELBO(rec_weight, kl_weight, X, X_rf, Z_rf) of one kind of fake, and its KLs.

        ``targets`` is the first argument of L_rec (``inputs`` with or without gradient). The two
        kinds of fakes go through the networks separately, not concatenated, so that each
        process's noise rows line up with a single-process run (see Models.randn_like).
        """
        mu, logvar, reconstructed = self.fakes_through_model(inputs, y, models, decode)
        groups = models.latent_groups
        neg_elbo = negative_elbo(targets, reconstructed, mu, logvar, groups, rec_weight, kl_weight, self.config.recon_loss)
        return neg_elbo, kl_per_group(mu, logvar, groups)

    def encoder_loss(self, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        c, s = self.config, self.scale(models)
        x, y = ctx["batch"].x, ctx["batch"].y
        groups = models.latent_groups

        x_rec = models.decode(ctx["z"], y)  # line 9: X_r <- D(Z)
        with torch.no_grad():
            x_fake = models.decode(ctx["z_prior"], y)  # line 9: X_f <- D(Z_f) (no encoder dependence)

        # line 12: ELBO <- s · ELBO(β_rec, β_kl, X, X_r, Z)
        rec_real = reconstruction_error(x, x_rec, c.recon_loss).mean()
        kls_real = kl_per_group(ctx["mu"], ctx["logvar"], groups)
        kl_real_weighted = weighted_kl(ctx["mu"], ctx["logvar"], groups, c.beta_kl).mean()
        loss_real = s * (c.beta_rec * rec_real + kl_real_weighted)

        # lines 10-11, 13-14: ELBO_r, ELBO_f with β_neg on the KL (stop-gradients: module docstring)
        rec_in = x_rec if c.encoder_fake_grad == "full" else x_rec.detach()
        rec_target = x_rec.detach() if c.encoder_fake_grad == "none" else x_rec
        neg_elbo_rec, kls_rec = self.fake_elbos(rec_in, rec_target, y, models, "full", c.beta_rec, c.beta_neg)
        neg_elbo_fake, kls_fake = self.fake_elbos(x_fake, x_fake, y, models, "full", c.beta_rec, c.beta_neg)
        # lines 15-16: expELBO = ½·exp(2s·ELBO), computed overflow-safely
        exp_elbo_rec = exp_elbo(neg_elbo_rec, s)
        exp_elbo_fake = exp_elbo(neg_elbo_fake, s)
        # line 17: L_E = ELBO − ½(expELBO_r + expELBO_f), ascended; we minimise its negative
        loss = loss_real + 0.5 * (exp_elbo_rec + exp_elbo_fake)

        logs = {
            "rec": rec_real.detach(),
            **{log_key("kl", g, groups): kl.mean().detach() for g, kl in kls_real.items()},
            **{log_key("kl_fake", g, groups): (0.5 * (kls_rec[g].mean() + kls_fake[g].mean())).detach() for g in groups},
            "exp_elbo_rec": exp_elbo_rec.detach(),
            "exp_elbo_fake": exp_elbo_fake.detach(),
        }
        return PhaseOutput(loss, logs)

    def decoder_loss(self, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        c, s = self.config, self.scale(models)
        x, y = ctx["batch"].x, ctx["batch"].y
        groups = models.latent_groups

        # line 21: X_r <- D(Z), X_f <- D(Z_f) with the same Z, Z_f as the encoder phase
        x_rec = models.decode(ctx["z"].detach(), y)
        x_fake = models.decode(ctx["z_prior"], y)
        # line 24: ELBO <- β_rec·L_rec(X, X_r) (the real KL does not depend on the decoder)
        rec_real = reconstruction_error(x, x_rec, c.recon_loss).mean()
        # lines 22-23, 25-26: the (frozen) encoder sees the fakes with gradient, their reconstructions
        # are sg(); ELBO(γ_r·β_rec, β_kl, X_r|X_f, X_rf|X_ff, Z_rf|Z_ff). "reconstructions": the
        # γ_r term's gradient goes through D(sg(Z_rf)) to the target sg(X_r) instead (module docstring).
        alg2 = c.decoder_fake_grad == "fakes"
        decode, targets = ("none", (x_rec, x_fake)) if alg2 else ("weights", (x_rec.detach(), x_fake.detach()))
        neg_elbo_rec, kls_rec = self.fake_elbos(x_rec, targets[0], y, models, decode, c.gamma_r * c.beta_rec, c.beta_kl)
        neg_elbo_fake, kls_fake = self.fake_elbos(x_fake, targets[1], y, models, decode, c.gamma_r * c.beta_rec, c.beta_kl)
        # line 27: L_D = s·(ELBO + ½(ELBO_r + ELBO_f)), negated
        loss = s * (c.beta_rec * rec_real + 0.5 * (neg_elbo_rec.mean() + neg_elbo_fake.mean()))

        logs = {
            "rec_dec": rec_real.detach(),
            **{log_key("kl_fake_dec", g, groups): (0.5 * (kls_rec[g].mean() + kls_fake[g].mean())).detach() for g in groups},
        }
        return PhaseOutput(loss, logs)


@hookimpl
def genvae_register_objectives(register) -> None:  # type: ignore[no-untyped-def]
    register("soft-intro", SoftIntroVAE)
