"""The plugin API: every hook genvae calls. Plugins implement them with ``@genvae.hookimpl``.

Each registration hook receives a ``register(name, value)`` callable; the core owns duplicate
checks and attribution (which plugin registered what), so hooks return nothing.
Hooks are always called with keyword arguments.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("genvae")
hookimpl = pluggy.HookimplMarker("genvae")


@hookspec
def genvae_register_objectives(register: Callable[[str, Any], None]) -> None:
    """Register training objectives: ``register("soft-intro", SoftIntroVAE)``.

    The value is an :class:`genvae.Objective` subclass with a ``Config`` dataclass.
    """


@hookspec
def genvae_register_architectures(register: Callable[[str, Any], None]) -> None:
    """Register architectures: ``register("mlp", Architecture(encoder=..., decoder=...))``."""


@hookspec
def genvae_register_datasets(register: Callable[[str, Any], None]) -> None:
    """Register datasets: ``register("8gaussians", factory)``.

    ``factory(**options) -> DataSource``; its keyword arguments are the dataset's options
    (set with ``--set data.<option>=...``).
    """


@hookspec
def genvae_register_metrics(register: Callable[[str, Any], None]) -> None:
    """Register evaluations: ``register("toy2d", Metric(evaluate=...))``."""


@hookspec
def genvae_register_features(register: Callable[[str, Any], None]) -> None:
    """Register feature extractors for FID / KID / precision-recall (``--features NAME``):
    ``register("classifier", factory)``.

    ``factory(**options)`` returns an ``nn.Module``-like extractor with ``name``, ``dim``,
    ``settings() -> dict`` and ``__call__(images in [0, 1], (N, C, H, W)) -> (N, dim)``, always in
    eval mode. ``options`` holds ``inception_weights``, ``feature_weights`` (the user's
    ``--feature-weights`` path) and, for some callers, ``resize`` or ``seed``; accept and ignore
    what you do not use.
    """


@hookspec
def genvae_register_losses(register: Callable[[str, Any], None]) -> None:
    """Register reconstruction losses: ``register("perceptual", loss)``.

    ``loss(x, x_rec) -> Tensor`` of shape (batch,): −log p(x|z) up to a constant, per sample.
    Objectives use it through their ``recon_loss`` option.
    """


@hookspec
def genvae_register_commands(app: Any) -> None:
    """Add sub-commands to the ``genvae`` command line: ``app`` is its typer.Typer, so
    ``app.command("my-cmd")(function)`` or ``app.add_typer(my_app, name="my-group")``.

    Plugin commands are loaded when the command line names a command genvae does not have
    itself, so ``genvae --help`` stays fast.
    """
