"""The base of every image dataset: pixels held as a uint8 tensor (N, C, H, W) per split, loaded on
first use, handed out as float32 batches in [0, 1].

``train_stream`` shuffles each epoch with a ``torch.Generator`` seeded by ``seed + epoch``, gives
each rank a disjoint slice of the permutation, and its ``state_dict`` is (epoch, position), so a
resumed run continues exactly mid-epoch. A subclass only reads its files (``load_split``).
"""

from __future__ import annotations

import hashlib
import math
import warnings

from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from genvae.core.interfaces import Batch, BatchStream, DataSource, Models
from genvae.errors import ConfigError, DataChangedWarning, DataError


def shared_data_dirs(name: str) -> list[Path]:
    """Default places for a dataset: ``../shared/data/<name>`` from the working directory and
    from the project checkout (developer machines; not for an installed package, whose folder
    is no checkout), then ``./data/<name>``."""
    checkout = Path(__file__).resolve().parents[3]
    beside_checkout = [checkout.parent / "shared" / "data" / name] if (checkout / "pyproject.toml").is_file() else []
    candidates = [Path.cwd().parent / "shared" / "data" / name, *beside_checkout, Path.cwd() / "data" / name]
    unique: list[Path] = []
    for c in candidates:
        c = c.resolve()
        if c not in unique:
            unique.append(c)
    return unique





FINGERPRINT_ITEMS = 16
SPLIT_SEED = 2021  # the rows a file's held-out split takes do not depend on the training seed


def held_out_split(n: int, test_fraction: float) -> dict[str, Tensor]:
    """Indices of the ``train`` and ``test`` splits of ``n`` rows of a file with ``test_fraction``
    held out (drawn once, the same for every seed); without, both are every row."""
    n_test = min(n - 1, math.ceil(n * test_fraction)) if test_fraction > 0 else 0
    if not n_test:
        every = torch.arange(n)
        return {"train": every, "test": every}
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return {"train": perm[n_test:].sort().values, "test": perm[:n_test].sort().values}


def held_out_batch(source: Any, n: int, seed: int) -> Batch:
    """``n`` items of ``source``'s test split (``split_size`` / ``get``) in a seeded random order,
    repeated when the split has fewer."""
    size = source.split_size("test")
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return source.get(perm.repeat(-(-n // size))[:n], "test")


class ImageStream(BatchStream):
    """Endless shuffled batches of one rank's shard; resumable at (epoch, position)."""

    def __init__(self, source: "ImageData", batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world_size {world_size}")
        self.source, self.batch_size, self.seed, self.rank, self.world_size = source, batch_size, seed, rank, world_size
        self.size = source.split_size("train")
        self.shard_size = self.size // world_size
        self.unit = "images" if source.kind == "images" else "rows"  # a points file serves rows the same way
        if self.shard_size == 0:
            raise DataError(f"{source.name}: {self.size} training {self.unit} cannot be split over {world_size} processes")
        self.epoch, self.position = 0, 0
        self._cached: tuple[int, Tensor, Tensor | None] | None = None
        self._fingerprint: str | None = None

    def _epoch_order(self, epoch: int) -> tuple[Tensor, Tensor | None]:
        """This rank's indices for ``epoch`` (and its flip mask when the source flips)."""
        if self._cached is None or self._cached[0] != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.size, generator=g)
            flips = torch.rand(self.size, generator=g) < 0.5 if self.source.hflip else None
            shard = slice(self.rank, self.shard_size * self.world_size, self.world_size)
            self._cached = (epoch, perm[shard], None if flips is None else flips[shard])
        return self._cached[1], self._cached[2]

    def next_batch(self) -> Batch:
        indices, flips = [], []
        need = self.batch_size
        while need:
            order, flip = self._epoch_order(self.epoch)
            take = min(need, self.shard_size - self.position)
            indices.append(order[self.position : self.position + take])
            if flip is not None:
                flips.append(flip[self.position : self.position + take])
            self.position += take
            need -= take
            if self.position == self.shard_size:
                self.epoch, self.position = self.epoch + 1, 0
        index = torch.cat(indices)
        batch = self.source.get(index, "train")
        if flips:
            mask = torch.cat(flips)
            batch.x[mask] = batch.x[mask].flip(-1)
        return batch

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    def fingerprint(self) -> str:
        """A hash of ``FINGERPRINT_ITEMS`` training items spread evenly over the split (first and
        last included) and their labels: the same for the same data, so a resume can tell a file
        or folder whose content changed at the same size (a sample: a change elsewhere goes unseen)."""
        if self._fingerprint is None:
            index = torch.linspace(0, self.size - 1, min(FINGERPRINT_ITEMS, self.size)).round().long().unique()
            batch = self.source.get(index, "train")
            digest = hashlib.blake2b(batch.x.to(torch.float32).contiguous().numpy().tobytes(), digest_size=8)
            if batch.y is not None:
                digest.update(batch.y.to(torch.int64).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "size": self.size, "fingerprint": self.fingerprint()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        saved = state.get("size")  # absent in checkpoints written before it was kept
        if saved is not None and int(saved) != self.size:  # the folder or file changed since the checkpoint
            raise DataError(f"{self.source.name} holds {self.size} training {self.unit} where the checkpoint's run had {saved}: the data "
                            f"changed, so the run cannot continue exactly; restore the {saved} {self.unit}, or train a new run on the data as it is now")  # fmt: skip
        if state.get("fingerprint") not in (None, self.fingerprint()):  # absent before it was kept
            warnings.warn(f"{self.source.name}: the training {self.unit} differ from those the checkpoint was trained on (same number, "
                          f"other content: the file or folder changed since); the run continues on the data as it is now",
                          DataChangedWarning, stacklevel=2)  # fmt: skip
        if self.position >= self.shard_size:
            raise DataError(f"cannot resume {self.source.name} at position {self.position}: an epoch has {self.shard_size} {self.unit} per process")


class ImageData(DataSource):
    """Images as uint8 tensors per split, float32 [0, 1] batches, sample / reconstruction figures.

    Subclasses set ``name``, ``shape``, ``num_classes``, ``recommended`` and implement
    ``load_split(split) -> (uint8 images (N, C, H, W), int64 labels (N,) or None)``.
    """

    kind = "images"
    name = "images"
    hflip = False

    def __init__(self) -> None:
        self._splits: dict[str, tuple[Tensor, Tensor | None]] = {}

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def split_data(self, split: str) -> tuple[Tensor, Tensor | None]:
        if split not in self._splits:
            images, labels = self.load_split(split)
            self._splits[split] = (images, labels)
        return self._splits[split]

    def split_size(self, split: str) -> int:
        return len(self.split_data(split)[0])

    def get(self, index: Tensor, split: str = "train") -> Batch:
        """The images at ``index`` as float32 in [0, 1] (and their labels)."""
        images, labels = self.split_data(split)
        x = images[index].to(torch.float32).div_(255.0)
        return Batch(x, None if labels is None else labels[index])

    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> ImageStream:
        return ImageStream(self, batch_size, seed, rank, world_size)

    def test_batch(self, n: int, seed: int = 0) -> Batch:
        """``n`` held-out images (a seeded random choice from the test split) with labels."""
        return held_out_batch(self, n, seed)

    def write_figures(self, models: Models, out_dir: Path, seed: int = 0) -> list[Path]:
        """``samples.png`` (prior samples; one row per class for a conditional model) and
        ``reconstructions.png`` (odd rows: test images, or training images where there is no held-out split; even rows: reconstructions)."""
        from genvae.viz.images import RECONSTRUCTIONS_CAPTION, TRAINING_RECONSTRUCTIONS_CAPTION, reconstruction_grid, sample_grid, samples_caption, save_grid

        out_dir = Path(out_dir)
        with torch.no_grad():
            paths = [save_grid(sample_grid(models, n=64, seed=seed), out_dir / "samples.png", samples_caption(models))]
            test = self.test_batch(32, seed=seed)
            caption = RECONSTRUCTIONS_CAPTION if getattr(self, "has_test_split", True) else TRAINING_RECONSTRUCTIONS_CAPTION
            paths.append(save_grid(reconstruction_grid(models, test.x, test.y), out_dir / "reconstructions.png", caption))
        return paths
