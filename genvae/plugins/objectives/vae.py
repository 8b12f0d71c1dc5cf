"""The β-VAE: one phase that trains encoder and decoder on the negative ELBO (paper Eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Batch, Models, Objective, Phase, PhaseOutput
from genvae.core.losses import GroupWeight, kl_per_group, group_weight, log_key, reconstruction_error, reparameterize


@dataclass
class VAEConfig:
    beta_rec: float = 1.0  # weight of the reconstruction term
    beta_kl: GroupWeight = 1.0  # weight of the KL term (one number, or one per latent group)
    recon_loss: str = "mse"  # mse | bce | gaussian


def vae_loss(batch: Batch, models: Models, beta_rec: float, beta_kl: GroupWeight, recon: str) -> PhaseOutput:
    """Mean over the batch of β_rec·L_rec(x, D(z)) + β_kl·KL(q(z|x) ‖ p(z)), z ~ q(z|x)."""
    mu, logvar = models.encode(batch.x, batch.y)
    z = reparameterize(mu, logvar, models.randn_like)
    x_rec = models.decode(z, batch.y)
    rec = reconstruction_error(batch.x, x_rec, recon).mean()
    kls = {name: kl.mean() for name, kl in kl_per_group(mu, logvar, models.latent_groups).items()}
    loss = beta_rec * rec + sum(group_weight(beta_kl, name) * kl for name, kl in kls.items())
    logs = {"rec": rec.detach(), **{log_key("kl", name, models.latent_groups): kl.detach() for name, kl in kls.items()}}
    return PhaseOutput(loss, logs)


class VAE(Objective):
    """β-VAE ELBO, trained jointly (one Adam per part; Adam is per-parameter, so this equals one
    optimizer over all parameters)."""

    Config = VAEConfig
    phases = (Phase("vae", trains=("encoder", "decoder")),)

    def begin_step(self, batch: Batch, models: Models, step: int) -> dict[str, Any]:
        return {"batch": batch}

    def phase_loss(self, phase: Phase, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        c = self.config
        return vae_loss(ctx["batch"], models, c.beta_rec, c.beta_kl, c.recon_loss)


@hookimpl
def genvae_register_objectives(register) -> None:  # type: ignore[no-untyped-def]
    register("vae", VAE)
