"""Progressive growing (ProGAN / ALAE; the paper's style-based models, Section 6.3): the schedule
of resolution levels and blend factors, the real images of each level, and a data stream whose
batch size changes with the level.

Levels count from 4x4 (level 0: 4x4, 1: 8x8, ...). Training starts at ``grow.start_resolution``;
each level lasts ``grow.images_per_level`` training images (over all processes); during the
first ``grow.fade`` of a level other than the first, alpha rises linearly from 0 to 1 while the
new blocks fade in. After the last level the model stays at full resolution until
``train.steps``. Everything is a function of the step, so a resumed run is at the same level and
alpha as the run it continues, mid-transition included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from genvae.core.interfaces import Batch, BatchStream, DataSource
from genvae.errors import ConfigError


@dataclass
class GrowConfig:
    start_resolution: int = 0  # first level's resolution (4, 8, ...); 0 trains at full resolution
    images_per_level: int = 0  # training images per level (all processes together)
    fade: float = 0.5  # fraction of a new level over which alpha goes 0 -> 1
    batch_sizes: list[int] = field(default_factory=list)  # per level from 4x4, per process; [] = train.batch_size
    lrs: list[float] = field(default_factory=list)  # per level from 4x4; [] = optim.lr
    beta_neg: list[float] = field(default_factory=list)  # per level from 4x4: objective.beta_neg; [] = unchanged


def per_level(values: Sequence[Any], level: int, default: Any) -> Any:
    """``values[level]``; a shorter list repeats its last value; an empty one gives ``default``."""
    if not values:
        return default
    return values[min(level, len(values) - 1)]


def level_of(resolution: int) -> int:
    return int(math.log2(resolution)) - 2


class GrowthSchedule:
    """Step -> (level, alpha), and each level's batch size, learning rate and beta_neg."""

    def __init__(self, config: GrowConfig, final_level: int, batch_size: int, lr: float, world_size: int = 1) -> None:
        start = config.start_resolution
        if start < 4 or start & (start - 1):
            raise ConfigError(f"grow.start_resolution must be a power of two >= 4, got {start}")
        if level_of(start) > final_level:
            raise ConfigError(f"grow.start_resolution {start} is above the data's resolution {4 * 2**final_level}")
        if config.images_per_level <= 0:
            raise ConfigError("grow.images_per_level must be positive when grow.start_resolution is set")
        if not 0.0 <= config.fade <= 1.0:
            raise ConfigError(f"grow.fade must be in [0, 1], got {config.fade}")
        for name in ("batch_sizes", "lrs", "beta_neg"):
            if any(v <= 0 for v in getattr(config, name)):
                raise ConfigError(f"grow.{name} must hold positive values, got {getattr(config, name)}")
        self.config, self.world_size = config, world_size
        self.first_level, self.final_level = level_of(start), final_level
        self.default_batch, self.default_lr = batch_size, lr
        # first step of each level
        self.starts: list[int] = [0]
        for level in range(self.first_level, final_level):
            self.starts.append(self.starts[-1] + self.steps_of(level))

    def batch_size(self, level: int) -> int:
        return int(per_level(self.config.batch_sizes, level, self.default_batch))

    def lr(self, level: int) -> float:
        return float(per_level(self.config.lrs, level, self.default_lr))

    def beta_neg(self, level: int) -> float | None:
        return per_level(self.config.beta_neg, level, None)

    def steps_of(self, level: int) -> int:
        return max(1, math.ceil(self.config.images_per_level / (self.batch_size(level) * self.world_size)))

    def level_at(self, step: int) -> int:
        index = sum(1 for s in self.starts[1:] if step >= s)
        return self.first_level + index

    def at(self, step: int) -> tuple[int, float]:
        """(level, alpha) of training step ``step``."""
        level = self.level_at(step)
        if level == self.first_level or self.config.fade == 0:
            return level, 1.0
        into = step - self.starts[level - self.first_level]
        return level, min(1.0, into / (self.config.fade * self.steps_of(level)))


def level_images(x: Tensor, level: int, alpha: float) -> Tensor:
    """Real images for ``level``: downsampled to its resolution and, while the level fades in,
    blended with their upsampled half-resolution version (ALAE), so that real and generated
    images change in the same way."""
    size = 4 * 2**level
    if x.shape[-1] != size:
        x = F.avg_pool2d(x, x.shape[-1] // size)
    if alpha < 1.0:
        coarse = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = torch.lerp(coarse, x, alpha)
    return x


class LevelStream(BatchStream):
    """The data stream of the current level (each level has its own batch size and order).
    Its state names the level, so a resumed run continues the same level's stream."""

    def __init__(self, data: DataSource, schedule: GrowthSchedule, level: int, seed: int, rank: int, world_size: int) -> None:
        self.data, self.schedule, self.seed, self.rank, self.world_size = data, schedule, seed, rank, world_size
        self.level = -1
        self.set_level(level)

    def set_level(self, level: int) -> None:
        if level != self.level:
            self.level = level
            self.inner = self.data.train_stream(self.schedule.batch_size(level), self.seed + 1009 * level, self.rank, self.world_size)
            self._iterator: Iterator[Batch] | None = None

    def __iter__(self) -> Iterator[Batch]:
        while True:
            if self._iterator is None:
                self._iterator = iter(self.inner)
            yield next(self._iterator)

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_level(int(state["level"]))
        self.inner.load_state_dict(state["inner"])
        self._iterator = None
