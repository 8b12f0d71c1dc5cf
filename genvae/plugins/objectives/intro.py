"""IntroVAE (Huang et al. 2018) with the hard margin m: paper Eq. 2 and Appendix 9.1.1.

Minimised losses, with fakes X_r = D(Z) (reconstructions) and X_f = D(Z_f) (prior samples)
treated alike, as in Soft-IntroVAE, and their terms averaged (½ each):

    L_E = β_rec·L_r(x) + β_kl·KL(x) + β_neg·½ Σ_{fake} [m − KL(E(fake))]⁺
    L_D = β_rec·L_r(x) + β_neg·½ Σ_{fake} KL(E(fake))

The encoder sees the fakes as data (detached, IntroVAE's Alg. 1 ng()); the decoder's gradient
flows through the frozen encoder. No scale s (Appendix 9.1.1: "not required in IntroVAE").

``margin`` says where the hinge [m − KL]⁺ is taken: ``"sample"`` (default) per generated sample,
then averaged, as Eq. 2 writes the objective per (x, z); ``"batch"`` on the mini-batch's mean
KL, as IntroVAE's official code does (``relu(m - kl.mean())``). They differ once some samples
of a batch are past the margin and others are not: per sample, those below keep being pushed;
on the batch mean, none is once the mean is past m.

With several latent groups (LORD's class and content codes) the hinge is taken per group, with
that group's β_neg and the same m: Σ_g β_neg,g·½ Σ_{fake} [m − KL_g(E(fake))]⁺. Eq. 2 has one
latent code; a hinge per group is genvae's choice, so that each group has its own β_neg as in
Soft-IntroVAE, and a group past the margin does not excuse another that collapsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Batch, Models, Objective, Phase, PhaseOutput
from genvae.core.losses import GroupWeight, kl_per_group, group_weight, log_key, reconstruction_error
from genvae.errors import ConfigError
from genvae.plugins.objectives.soft_intro import DECODER_PHASE, ENCODER_PHASE, VAE_WARMUP_PHASE, encode_and_draw_prior
from genvae.plugins.objectives.vae import vae_loss


@dataclass
class IntroConfig:
    beta_rec: float = 1.0  # β_rec: reconstruction weight
    beta_kl: GroupWeight = 1.0  # β_kl: KL weight of real data
    beta_neg: GroupWeight = 1.0  # β_neg: weight of the adversarial KL terms
    m: float = 1.0  # hard margin on the KL of fakes (nats)
    num_vae: int = 0  # steps of plain-VAE warm-up
    recon_loss: str = "mse"  # mse | bce | gaussian
    margin: str = "sample"  # sample (Eq. 2) | batch (IntroVAE's code): where the hinge is taken

    def __post_init__(self) -> None:
        if self.margin not in ("sample", "batch"):
            raise ConfigError(f"objective.margin must be 'sample' or 'batch', got {self.margin!r}")


class IntroVAE(Objective):
    Config = IntroConfig
    phases = (ENCODER_PHASE, DECODER_PHASE)

    def phases_at(self, step: int) -> tuple[Phase, ...]:
        return (VAE_WARMUP_PHASE,) if step < self.config.num_vae else self.phases

    def begin_step(self, batch: Batch, models: Models, step: int) -> dict[str, Any]:
        return {"batch": batch} if step < self.config.num_vae else encode_and_draw_prior(batch, models)

    def phase_loss(self, phase: Phase, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        c = self.config
        if phase.name == "vae":
            return vae_loss(ctx["batch"], models, c.beta_rec, c.beta_kl, c.recon_loss)
        if phase.name == "encoder":
            return self.encoder_loss(ctx, models)
        return self.decoder_loss(ctx, models)

    def fake_kls(self, x_rec: torch.Tensor, x_fake: torch.Tensor, y: torch.Tensor | None, models: Models) -> dict[str, torch.Tensor]:
        """Per latent group, KL(E(fake)) per sample of [X_r; X_f], shape (2B,): both kinds of fakes
        go through the encoder as one batch."""
        y2 = None if y is None else torch.cat([y, y])
        mu_f, logvar_f = models.encode(torch.cat([x_rec, x_fake]), y2)
        return kl_per_group(mu_f, logvar_f, models.latent_groups)

    def encoder_loss(self, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        """L_E = β_rec·L_r(x) + β_kl·KL(x) + β_neg·½ Σ_{fake} [m − KL(E(fake))]⁺, fakes detached."""
        c, batch = self.config, ctx["batch"]
        groups = models.latent_groups
        x_rec = models.decode(ctx["z"], batch.y)
        with torch.no_grad():
            x_fake = models.decode(ctx["z_prior"], batch.y)
        rec_real = reconstruction_error(batch.x, x_rec, c.recon_loss).mean()
        kls_fake = self.fake_kls(x_rec.detach(), x_fake, batch.y, models)

        loss = c.beta_rec * rec_real
        logs: dict[str, torch.Tensor] = {}
        kls_real = kl_per_group(ctx["mu"], ctx["logvar"], groups)
        for g, kl in kls_real.items():
            loss = loss + group_weight(c.beta_kl, g) * kl.mean()
            logs[log_key("kl", g, groups)] = kl.mean().detach()
        for g, kl in kls_fake.items():
            kl_rec, kl_fake = kl.chunk(2)
            if c.margin == "batch":  # [m − mean KL]⁺ (IntroVAE's code)
                hinge = F.relu(c.m - kl_rec.mean()) + F.relu(c.m - kl_fake.mean())
            else:  # mean of [m − KL]⁺ (Eq. 2)
                hinge = F.relu(c.m - kl_rec).mean() + F.relu(c.m - kl_fake).mean()
            loss = loss + group_weight(c.beta_neg, g) * 0.5 * hinge
            logs[log_key("kl_fake", g, groups)] = kl.mean().detach()
        logs["rec"] = rec_real.detach()
        return PhaseOutput(loss, logs)

    def decoder_loss(self, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        """L_D = β_rec·L_r(x) + β_neg·½ Σ_{fake} KL(E(fake)), through the frozen encoder."""
        c, batch = self.config, ctx["batch"]
        groups = models.latent_groups
        x_rec = models.decode(ctx["z"].detach(), batch.y)
        x_fake = models.decode(ctx["z_prior"], batch.y)
        rec_real = reconstruction_error(batch.x, x_rec, c.recon_loss).mean()
        kls_fake = self.fake_kls(x_rec, x_fake, batch.y, models)

        loss = c.beta_rec * rec_real
        logs: dict[str, torch.Tensor] = {}
        for g, kl in kls_fake.items():
            kl_rec, kl_fake = kl.chunk(2)
            loss = loss + group_weight(c.beta_neg, g) * 0.5 * (kl_rec.mean() + kl_fake.mean())
            logs[log_key("kl_fake_dec", g, groups)] = kl.mean().detach()
        logs["rec_dec"] = rec_real.detach()
        return PhaseOutput(loss, logs)


@hookimpl
def genvae_register_objectives(register) -> None:  # type: ignore[no-untyped-def]
    register("intro", IntroVAE)
