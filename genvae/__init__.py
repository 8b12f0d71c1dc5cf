"""genvae: plugin-based introspective variational autoencoders (VAE, IntroVAE, Soft-IntroVAE).

The public names below are imported on first use (PEP 562), so that ``import genvae`` — and
with it ``genvae --help`` — does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from genvae.core.hookspecs import hookimpl

_INTERFACES = (
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
)

__all__ = ["hookimpl", *_INTERFACES]


def __getattr__(name: str) -> Any:
    if name in _INTERFACES:
        return getattr(importlib.import_module("genvae.core.interfaces"), name)
    raise AttributeError(f"module 'genvae' has no attribute {name!r}")
