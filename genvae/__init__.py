"""genvae: plugin-based introspective variational autoencoders (VAE, IntroVAE, Soft-IntroVAE)."""

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import (
    Architecture,
    Batch,
    BatchStream,
    Component,
    DataSource,
    Decoder,
    Encoder,
    Metric,
    Models,
    Objective,
    Phase,
    PhaseOutput,
)

__all__ = [
    "Architecture",
    "Batch",
    "BatchStream",
    "Component",
    "DataSource",
    "Decoder",
    "Encoder",
    "Metric",
    "Models",
    "Objective",
    "Phase",
    "PhaseOutput",
    "hookimpl",
]
