"""Your own images as one array: a ``.npy`` or ``.npz`` file (``--data images.npy``, or
``genvae.train(data=array)`` from Python, which saves the array into the run directory).

Layouts: (N, H, W) greyscale, (N, C, H, W) or (N, H, W, C) with C = 1 or 3; square images.
Values: uint8 (0-255), or floats in [0, 1] (quantised to uint8, as every image dataset serves
them). In an ``.npz`` the images are its one array of three or four dimensions (or ``data.key``);
``data.labels=NAME`` names an array of integer class labels beside them (class-conditional
training and classifier features). ``data.test_fraction`` holds rows out, drawn once for every
seed, as the points dataset does.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genvae.errors import ConfigError, DataError
from genvae.plugins.datasets.image_folder import default_channels, image_beta_rec
from genvae.plugins.datasets.image_source import ImageData, held_out_split
from genvae.plugins.datasets.points_file import numpy_read_error

ARRAY_SUFFIXES = (".npy", ".npz")


def stored_ranks(path: Path) -> dict[str, int]:
    """The number of dimensions of each array in a .npy (key "") or .npz file, read from the
    headers only (an .npz of images is not loaded to look at it); {} when unreadable."""
    try:
        if path.suffix.lower() == ".npy":
            return {"": np.load(path, mmap_mode="r", allow_pickle=False).ndim}
        ranks = {}
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape = read_header(f)[0]
                ranks[member.removesuffix(".npy")] = len(shape)
        return ranks
    except (OSError, ValueError, zipfile.BadZipFile):
        return {}


def holds_images(path: Path) -> bool:
    """Whether ``path`` is a .npy / .npz file whose arrays include one of 3 or 4 dimensions."""
    return path.suffix.lower() in ARRAY_SUFFIXES and any(rank in (3, 4) for rank in stored_ranks(path).values())


def as_uint8_images(array: np.ndarray, what: str) -> np.ndarray:
    """(N, C, H, W) uint8 of an array of images in any of the layouts above."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # (N, H, W, C)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise DataError(f"{what} holds an array of shape {array.shape}; give images as (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 or 3")
    if array.shape[2] != array.shape[3]:
        raise DataError(f"{what} holds {array.shape[2]}x{array.shape[3]} images; the architectures take square ones: crop or pad them")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == bool:
        return np.ascontiguousarray(array.astype(np.uint8) * 255)
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{what} holds {array.dtype} values; save the pixels as uint8 (0-255) or floats in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise DataError(f"{what} holds NaN or infinite pixels; remove or fill them")
    if np.issubdtype(array.dtype, np.integer):
        if low < 0 or high > 255:
            raise DataError(f"{what} holds integer pixels from {low:g} to {high:g}; give 0-255 (uint8)")
        return np.ascontiguousarray(array.astype(np.uint8))
    if low < 0 or high > 1:
        raise DataError(f"{what} holds float pixels from {low:.3g} to {high:.3g}; give floats in [0, 1] (x / 255 for 0-255 values) or uint8")
    return np.ascontiguousarray(np.round(array * 255.0).astype(np.uint8))


class ImageArray(ImageData):
    """Images of a .npy / .npz array (``data.path``), with labels from ``data.labels`` (.npz)."""

    name = "image-array"
    num_classes = 0

    def __init__(self, path: str = "", key: str = "", labels: str = "", test_fraction: float = 0.0) -> None:
        super().__init__()
        if not path:
            raise ConfigError("the image-array dataset needs data.path, a .npy or .npz file of images; or give --data FILE.npy")
        if not 0.0 <= test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in [0, 1), got {test_fraction}")
        self.path = Path(path).expanduser()
        if not self.path.is_file() or self.path.suffix.lower() not in ARRAY_SUFFIXES:
            raise DataError(f"image-array: no .npy or .npz file {self.path}; set data.path to one")
        if labels in ("true", "false", "True", "False"):
            raise ConfigError(f"data.labels names the .npz array of class labels (e.g. data.labels=y), not {labels}")
        images, targets = self._read(key, labels)
        self.images = torch.from_numpy(images)
        self.labels = None if targets is None else torch.from_numpy(targets)
        self.num_classes = 0 if targets is None else int(targets.max()) + 1
        self.shape = tuple(self.images.shape[1:])
        self.has_test_split = test_fraction > 0
        self.index = held_out_split(len(self.images), test_fraction)
        resolution = self.shape[-1]
        self.recommended = {
            "train": {"batch_size": min(32, len(self.index["train"])), "lr": 2e-4},
            "arch": {"name": "residual", "z_dim": 128 if resolution >= 32 else 32, "channels": default_channels(resolution)},
            "vae": {"beta_rec": image_beta_rec(self.shape), "beta_kl": 1.0},
            "soft-intro": {"beta_rec": image_beta_rec(self.shape), "beta_kl": 1.0, "beta_neg": 256.0},
        }

    def _read(self, key: str, labels: str) -> tuple[np.ndarray, np.ndarray | None]:
        what = f"image-array: {self.path.name}"
        try:
            if self.path.suffix.lower() == ".npy":
                if labels:
                    raise ConfigError(f"data.labels names an array of an .npz; {self.path.name} holds one array: save images and labels with np.savez")
                return as_uint8_images(np.load(self.path, allow_pickle=False), what), None
            with np.load(self.path, allow_pickle=False) as archive:
                names = list(archive.files)
                for wanted in (key, labels):
                    if wanted and wanted not in names:
                        raise DataError(f"{what} holds no array {wanted!r}; its arrays: {', '.join(names)}")
                if not key:
                    candidates = [n for n in names if archive[n].ndim in (3, 4)]
                    if len(candidates) != 1:
                        raise DataError(f"{what} holds {len(candidates)} arrays of images ({', '.join(candidates)}); choose one with data.key=NAME "
                                        f"(where a command takes data: image-array:path={self.path},key=NAME)")
                    key = candidates[0]
                images = as_uint8_images(archive[key], what)
                targets = archive[labels] if labels else None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"image-array: cannot read {self.path}: {numpy_read_error(exc)}") from None
        if targets is not None:
            if targets.shape != (len(images),) or not np.issubdtype(targets.dtype, np.integer):
                raise DataError(f"{what}: data.labels={labels} must hold one integer class (0, 1, ...) per image, "
                                f"got shape {targets.shape} of {targets.dtype} for {len(images)} images")  # fmt: skip
            if targets.min() < 0 or targets.max() >= len(images):
                bad = int(targets.min()) if targets.min() < 0 else int(targets.max())
                raise DataError(f"{what}: data.labels={labels} holds the class {bad}; classes are numbered 0, 1, ... (fewer than the "
                                f"{len(images)} images): renumber them, e.g. np.unique(labels, return_inverse=True)[1]")  # fmt: skip
            targets = targets.astype(np.int64)
        if len(images) < 2:
            raise DataError(f"{what} holds {len(images)} image(s); a dataset needs at least 2")
        return images, targets

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        index = self.index[split]
        return self.images[index], None if self.labels is None else self.labels[index]
