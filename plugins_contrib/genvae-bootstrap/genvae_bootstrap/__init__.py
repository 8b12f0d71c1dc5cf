"""genvae plugin: the bootstrap Soft-IntroVAE objective ``soft-intro-bootstrap``."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

import genvae
from genvae.core.losses import reparameterize
from genvae.plugins.objectives.soft_intro import SoftIntroConfig, SoftIntroVAE


@dataclass
class BootstrapConfig(SoftIntroConfig):
    gamma_r: float = 1.0  # the target decoder makes the fakes' reconstruction term safe to weigh fully
    target_every: int = 1000  # steps between copies of the decoder into the target decoder


class SoftIntroBootstrap(SoftIntroVAE):
    """Soft-IntroVAE whose fakes are reconstructed by a periodically copied target decoder."""

    Config = BootstrapConfig

    def setup(self, models: genvae.Models) -> None:
        self.target = copy.deepcopy(models.decoder).requires_grad_(False)
        self.target_step = 0

    def begin_step(self, batch: genvae.Batch, models: genvae.Models, step: int) -> dict[str, Any]:
        if step % max(self.config.target_every, 1) == 0:
            self.target.load_state_dict(models.decoder.state_dict())
            self.target_step = step
        return super().begin_step(batch, models, step)

    def fakes_through_model(self, x_fakes: torch.Tensor, y: torch.Tensor | None, models: genvae.Models, decode: str):
        """E(X_r), E(X_f) as usual; X_rf, X_ff from the target decoder in both phases."""
        mu, logvar = models.encode(x_fakes, y)
        return mu, logvar, self.target(reparameterize(mu, logvar, models.randn_like), y)

    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target.state_dict(), "target_step": self.target_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        self.target_step = int(state["target_step"])


@genvae.hookimpl
def genvae_register_objectives(register) -> None:  # type: ignore[no-untyped-def]
    register("soft-intro-bootstrap", SoftIntroBootstrap)
