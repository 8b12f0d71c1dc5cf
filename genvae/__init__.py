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

_API = {"train": "genvae.api", "evaluate": "genvae.api", "log_likelihood": "genvae.api", "load_run": "genvae.core.run"}

__all__ = ["hookimpl", *_INTERFACES, *_API]
_MODULES = ("errors",)  # genvae.errors.ConfigError after a bare 'import genvae'


def __getattr__(name: str) -> Any:
    if name in _INTERFACES:
        return getattr(importlib.import_module("genvae.core.interfaces"), name)
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"genvae.{name}")
    raise AttributeError(f"module 'genvae' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazily imported names too (a notebook's tab completion)
    return sorted({*globals(), *__all__, *_MODULES})
