"""The small core's vocabulary: encoders, decoders, data sources, objectives and their phases.

Every architecture, dataset and objective — built-in or third-party — implements one of these.
The core never imports a concrete model.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


class Component(nn.Module):
    """An nn.Module whose constructor keyword arguments are its exported config (config.json).

    Subclasses pass every constructor argument to ``super().__init__(**kwargs)`` so that the
    component can be rebuilt from JSON without pickling any code. Tuples (such as
    ``data_shape``) are stored as lists, as JSON reads them back.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = _tuples_to_lists(config)


def _tuples_to_lists(value: Any) -> Any:
    """``value`` with every tuple or list, also inside lists and dicts, as a list."""
    if isinstance(value, dict):
        return {k: _tuples_to_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tuples_to_lists(v) for v in value]
    return value


class Encoder(Component):
    """x (and an optional class label y) -> parameters of a diagonal Gaussian posterior q(z|x).

    ``forward`` returns ``(mu, logvar)``, each of shape (batch, z_total). An encoder with several
    latent groups (e.g. LORD's class and content codes) lays them side by side along dim 1 and
    names their sizes in ``latent_groups`` (ordered); objectives compute one KL per group.

    Constructor convention: ``data_shape`` (per-sample shape), ``num_classes`` (0 when
    unconditional) and ``z_dim``, then architecture-specific options.
    """

    latent_groups: dict[str, int]

    @abstractmethod
    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]: ...


class Decoder(Component):
    """z (and an optional class label y) -> x, the mean of p(x|z). Same constructor convention."""

    @abstractmethod
    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor: ...


def module_device(module: nn.Module) -> torch.device:
    """The device of a network's parameters (the CPU for one without parameters)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def num_classes_of(network: nn.Module) -> int:
    """The number of classes a network is conditioned on, from its config (0: unconditional)."""
    return int(getattr(network, "config", {}).get("num_classes", 0) or 0)


def append_label(t: Tensor, y: Tensor | None, num_classes: int) -> Tensor:
    """``t`` (batch, features) with the one-hot class label appended, for class-conditional
    networks (the CVAE of Appendix 9.4.1); ``t`` unchanged when ``num_classes`` is 0."""
    if num_classes == 0:
        return t
    from genvae.errors import DataError

    if y is None:
        raise DataError("this model is class-conditional: pass each sample's class label y")
    return torch.cat([t, torch.nn.functional.one_hot(y.long(), num_classes).to(t.dtype)], dim=1)


@dataclass(frozen=True)
class Architecture:
    """A registered pair of network classes built from the same options.

    ``saved_defaults``: options added after configs were saved without them, with the value such
    a config meant (the network as it was then). Runs and exports saved before are rebuilt with
    these, so they keep computing what they were trained as, and benches fill them in before they
    compare saved settings with today's, so finished results stay reusable."""

    encoder: type[Encoder]
    decoder: type[Decoder]
    description: str = ""
    saved_defaults: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class Batch:
    x: Tensor
    y: Tensor | None = None


class DataSource(ABC):
    """A dataset plugin's product: what the trainer and the evaluators need from data.

    ``shape`` is the shape of one sample, ``num_classes`` is 0 for unlabeled data;
    ``class_names``, when given, names each class (``--label NAME`` of sample / reconstruct /
    interpolate).
    ``recommended`` maps an objective name (or "train" for trainer settings such as
    batch_size and steps, or "arch" for network options) to the hyperparameters the paper used
    with this data; they are applied automatically below anything the user sets. A ``"name"``
    in ``recommended["arch"]`` is the architecture used when the user names none.
    """

    shape: tuple[int, ...]
    num_classes: int = 0
    class_names: Sequence[str] = ()
    kind: ClassVar[str] = "points"  # "points" (2-D toy data) or "images"
    recommended: Mapping[str, Mapping[str, Any]] = {}

    @property
    def dim(self) -> int:
        """Number of input dimensions (the paper's 'input dim'; s = 1 / dim)."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @abstractmethod
    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> "BatchStream":
        """An endless, resumable stream of training batches for this process."""

    def write_figures(self, models: "Models", out_dir: Path, seed: int = 0) -> list[Path]:
        """Save the pictures a user wants to see during / after training (PNG files under
        ``out_dir``) and return their paths. Called with networks in eval mode, no grad."""
        return []

    def plot_samples(self, x: Tensor, path: Path) -> None:
        """Save generated samples ``x`` as a picture (``genvae sample --out FILE.png``): by default
        a grid of images (samples of shape (C, H, W); 8 columns, a square beyond 64) or a scatter of the first two coordinates
        (samples of two or more numbers)."""
        if len(self.shape) == 3 and self.shape[0] in (1, 3):
            from genvae.viz.images import make_grid, save_grid

            columns = max(8, math.isqrt(len(x) - 1) + 1)  # 8 up to 64 samples, then a square, not a strip of 8
            save_grid(make_grid(x.reshape(-1, *self.shape), nrow=columns), Path(path))
        elif len(self.shape) == 1 and self.shape[0] >= 2:
            from genvae.viz.points import scatter_generated

            scatter_generated(x, path)
        else:
            from genvae.errors import DataError

            raise DataError(f"dataset {type(self).__name__} cannot draw samples of shape {tuple(self.shape)} as a picture; "
                            "save them as .pt or .npy (define plot_samples to draw them)")  # fmt: skip

    def test_batch(self, n: int, seed: int = 0) -> Batch:
        """A fixed batch of held-out samples (for reconstructions and evaluation)."""
        stream = self.train_stream(n, seed=seed + 10_007)
        return next(iter(stream))


class BatchStream(ABC):
    """Endless iterator of batches with a ``state_dict`` so that resume continues exactly."""

    @abstractmethod
    def __iter__(self) -> Iterator[Batch]: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One update within a training step: the parts it trains and the loss it minimises.

    Every part ("encoder", "decoder") owns an optimizer and a scheduler; a phase steps the
    optimizers of the parts it trains. Parts not trained by a phase have
    ``requires_grad_(False)`` during it (StyleGAN2-ADA's phase pattern), so they receive no
    gradient, while gradients still flow *through* them to the trained part.
    """

    name: str
    trains: tuple[str, ...]


@dataclass
class PhaseOutput:
    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)  # scalar tensors, detached


@dataclass
class Models:
    """What an objective may call during a step."""

    encoder: Encoder
    decoder: Decoder
    latent_groups: dict[str, int]
    data_dim: int
    generator: torch.Generator | None = None  # all noise of a step (ε, prior z) comes from here
    rank: int = 0  # this process's share of a global batch is rows rank::world_size
    world_size: int = 1
    output_size: int | None = None

    def randn_like(self, t: Tensor) -> Tensor:
        """Standard normal noise shaped like ``t``, drawn from ``generator`` (seeded, resumable).

        With several processes every process draws the noise of the *global* batch from the same
        generator and keeps its rows ``rank::world_size`` — the rows its data came from — so that
        P processes × batch B compute exactly what one process computes with batch P·B.

        A generator on another device than ``t`` (a CPU generator for networks on a GPU) draws on
        its own device, and the noise is then moved to ``t``'s.
        """
        device = t.device if self.generator is None else self.generator.device
        if self.world_size == 1:
            return torch.randn(t.shape, generator=self.generator, device=device, dtype=t.dtype).to(t.device)
        shape = (t.shape[0] * self.world_size, *t.shape[1:])
        return torch.randn(shape, generator=self.generator, device=device, dtype=t.dtype)[self.rank :: self.world_size].to(t.device)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.encoder(x, y)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """D(z). A decoder with noise inputs of its own (``draws_noise = True``, e.g. the style
        decoder's per-pixel noise) draws them from ``randn_like`` too. With ``output_size`` set
        (figures during progressive growing) smaller outputs are enlarged to it (nearest)."""
        if getattr(self.decoder, "draws_noise", False):
            return self.enlarge(self.decoder(z, y, noise=self.randn_like))
        return self.enlarge(self.decoder(z, y))

    @property
    def device(self) -> torch.device:
        """Where the decoder's parameters are (where its inputs must go)."""
        return module_device(self.decoder)

    def enlarge(self, x: Tensor) -> Tensor:
        """Images smaller than ``output_size`` enlarged to it (nearest); anything else unchanged."""
        if self.output_size is not None and x.dim() == 4 and x.shape[-1] < self.output_size:
            x = torch.nn.functional.interpolate(x, size=self.output_size, mode="nearest")
        return x

    @property
    def z_dim(self) -> int:
        return sum(self.latent_groups.values())


class Objective(ABC):
    """A training objective made of phases.

    ``Config`` is a dataclass of the objective's hyperparameters (validated from the user's
    config). Per step the trainer calls ``begin_step`` once, then for each phase in
    ``phases_at(step)`` it toggles ``requires_grad``, calls ``phase_loss`` and steps the
    optimizers of the phase's parts.
    """

    Config: ClassVar[type]
    phases: ClassVar[tuple[Phase, ...]]

    def __init__(self, config: Any) -> None:
        self.config = config

    def phases_at(self, step: int) -> tuple[Phase, ...]:
        """The phases to run at training step ``step`` (0-based). Override for warm-ups."""
        return self.phases

    def setup(self, models: Models) -> None:
        """Called once by the trainer after the networks are built (and before a resume loads
        state). An objective with state of its own (e.g. a target network) creates it here and
        also defines ``state_dict`` / ``load_state_dict``: the trainer then checkpoints it."""

    @abstractmethod
    def begin_step(self, batch: Batch, models: Models, step: int) -> dict[str, Any]:
        """Work shared by the phases of one step (e.g. Alg. 2 lines 5-7). Returns a context."""

    @abstractmethod
    def phase_loss(self, phase: Phase, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        """The loss of one phase, to be minimised."""


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A registered evaluation: ``evaluate(run, **options) -> dict`` writes files under the run.

    ``distributed``: ``evaluate`` shares its work among the processes of a multi-process run
    itself (and gathers it), so it must be called on every process; otherwise genvae calls it on
    the main process only.
    """

    evaluate: Callable[..., dict[str, Any]]
    description: str = ""
    distributed: bool = False
