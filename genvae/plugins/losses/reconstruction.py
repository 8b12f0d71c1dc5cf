"""The built-in reconstruction losses, registered like any plugin's (``objective.recon_loss``)."""

from genvae.core.hookspecs import hookimpl
from genvae.core.losses import RECONSTRUCTION_LOSSES


@hookimpl
def genvae_register_losses(register) -> None:  # type: ignore[no-untyped-def]
    for name, loss in RECONSTRUCTION_LOSSES.items():
        register(name, loss)
