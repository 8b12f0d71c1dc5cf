"""Images from a folder: any directory of images (``folder``), and the face datasets FFHQ and
CelebA-HQ with the paper's split and style-based recipe. PIL decodes the files; nothing is
downloaded.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genvae.core.interfaces import Batch
from genvae.errors import ConfigError, DataError, TrainingAdvice
from genvae.plugins.datasets.image_source import ImageData

PRELOAD_LIMIT_BYTES = 2 * 1024**3  # folders larger than this (as uint8 pixels) are decoded per batch
SIZE_CHECK_FILES = 32  # image headers read to tell whether a folder's images are smaller than data.resolution
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def warn_if_enlarged(files: list[Path], resolution: int, folder: Path) -> None:
    """Warn when the images (the first ``SIZE_CHECK_FILES``, from their headers alone) are all
    smaller than ``resolution``: enlarging them slows training and adds no detail."""
    from PIL import Image

    sides = []
    for path in files[:SIZE_CHECK_FILES]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable: reading it for training reports it
            continue
    if sides and max(sides) < resolution:
        warnings.warn(f"folder: the images under {folder} are at most {max(sides)} pixels on their shorter side, smaller than "
                      f"data.resolution {resolution}: they are enlarged, which slows training and adds no detail; "
                      f"--set data.resolution={max(sides)} trains at their size", TrainingAdvice, stacklevel=3)  # fmt: skip


def find_image_files(folder: Path) -> list[Path]:
    """The files under ``folder`` (recursively, sorted) whose names end in an image suffix, any
    case. Symlinked folders are followed (each real folder once); a dangling link is listed, so
    that reading it fails and is reported like any unreadable file. macOS's "._" metadata files are
    not images and are left out."""
    import os

    found, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree, or a second link to one folder
            dirs[:] = []
            continue
        seen.add(real)
        found += [Path(root) / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith("._")]
    return sorted(found)


class ImageFolder(ImageData):
    """Every image under ``path`` (recursively), RGB (``channels=3``) or greyscale
    (``channels=1``), resized (shorter side) and centre-cropped to ``resolution``. Unreadable
    files are skipped with one warning listing them. With ``labels=True`` each subfolder of
    ``path`` is a class (``class_names``, sorted), as torchvision's ImageFolder. No held-out
    split exists, so ``test_batch`` draws from the same images. Folders too large to
    hold as uint8 (``PRELOAD_LIMIT_BYTES``) are decoded batch by batch instead, and then each
    unreadable file is replaced by the next readable one, with a warning when first met."""

    name = "folder"
    num_classes = 0
    has_test_split = False  # reports of a "test" split say these are the training images

    def __init__(self, path: str = "", resolution: int = 64, hflip: bool = False, channels: int = 3, labels: bool = False) -> None:
        super().__init__()
        if not path:
            raise ConfigError("the folder dataset needs data.path, the directory holding the images")
        if resolution <= 0:
            raise ConfigError(f"data.resolution must be positive, got {resolution}")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (greyscale) or 3 (RGB), got {channels}")
        self.path, self.resolution, self.hflip = Path(path).expanduser(), int(resolution), bool(hflip)
        self.shape = (channels, self.resolution, self.resolution)
        if not self.path.is_dir():
            what = "is not a directory" if self.path.exists() else "does not exist"
            raise DataError(f"folder: {self.path} {what}; set data.path to a folder of images ({', '.join(IMAGE_SUFFIXES)})")
        self.files = find_image_files(self.path)
        self._bad: set[Path] = set()
        self._served: dict[str, list[Path]] = {}
        if not self.files:
            raise DataError(f"folder: no image files ({', '.join(IMAGE_SUFFIXES)}) under {self.path}")
        warn_if_enlarged(self.files, self.resolution, self.path)
        self.class_names: list[str] = self._classes() if labels else []
        self.num_classes = len(self.class_names)
        self._class_index = {name: i for i, name in enumerate(self.class_names)}
        beta_rec = image_beta_rec(self.shape)
        self.recommended = {
            "train": {"batch_size": 32, "lr": 2e-4},
            "arch": {"name": "residual", "z_dim": 128, "channels": default_channels(self.resolution)},
            "vae": {"beta_rec": beta_rec, "beta_kl": 1.0},
            "soft-intro": {"beta_rec": beta_rec, "beta_kl": 1.0, "beta_neg": 256.0},
        }

    def _classes(self) -> list[str]:
        """The subfolders holding the images, sorted: class i is the i-th name."""
        loose = [f for f in self.files if len(f.relative_to(self.path).parts) == 1]
        if loose:
            raise DataError(f"folder: data.labels=true takes each subfolder of {self.path} as a class, but {len(loose)} image(s) lie "
                            f"in it directly ({loose[0].name}, ...); move them into class subfolders, or drop data.labels")  # fmt: skip
        names = sorted({f.relative_to(self.path).parts[0] for f in self.files})
        if len(names) < 2:
            raise DataError(f"folder: data.labels=true needs at least 2 class subfolders under {self.path}, found {names}")
        return names

    def label_of(self, path: Path) -> int:
        return self._class_index[path.relative_to(self.path).parts[0]]

    def _labels(self, paths: list[Path]) -> Tensor | None:
        return torch.tensor([self.label_of(p) for p in paths], dtype=torch.int64) if self.num_classes else None

    def _read(self, path: Path) -> np.ndarray | None:
        try:
            pixels = read_image(path, "L" if self.shape[0] == 1 else "RGB", (self.resolution, self.resolution))
            return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        except DataError as exc:  # decodable, but not as genvae's pixels: say why, then skip it
            warnings.warn(str(exc), stacklevel=2)
            return None
        except Exception:  # any unreadable or corrupt file is skipped, never a crash mid-epoch
            return None

    @property
    def lazy(self) -> bool:
        """Too large to hold as uint8 in memory: decode each batch from the files instead."""
        return len(self.files) * self.shape[0] * self.resolution**2 > PRELOAD_LIMIT_BYTES

    def split_files(self, split: str) -> list[Path]:
        """The files of ``split``; a plain folder has no held-out split, both are every file."""
        return self.files

    def split_size(self, split: str) -> int:
        return len(self.split_files(split)) if self.lazy else super().split_size(split)

    def get(self, index: Tensor, split: str = "train") -> Batch:
        if not self.lazy:
            return super().get(index, split)
        files = self.split_files(split)
        arrays, paths = [], []
        for i in index.tolist():
            for k in range(len(files)):  # an unreadable file is replaced by the next readable one
                path = files[(i + k) % len(files)]
                array = self._read(path)
                if array is not None:
                    break
                if path not in self._bad:
                    self._bad.add(path)
                    warnings.warn(f"folder: skipped unreadable image file {path}", stacklevel=2)
            else:
                raise DataError(f"{self.name}: none of the {len(files)} image files under {self.path} could be read")
            arrays.append(array)
            paths.append(path)
        return Batch(torch.from_numpy(np.stack(arrays)).to(torch.float32).div_(255.0), self._labels(paths))

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        files = self.split_files(split)
        other = "test" if split == "train" else "train"
        if other in self._splits and files is self.split_files(other):  # one set of images serves both splits
            return self._splits[other]
        arrays, served, bad = [], [], []
        for path in files:
            array = self._read(path)
            if array is None:
                bad.append(path)
            else:
                arrays.append(array)
                served.append(path)
        if bad:
            names = ", ".join(str(p.relative_to(self.path)) for p in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            warnings.warn(f"{self.name}: skipped {len(bad)} unreadable image file(s) of {len(files)} under {self.path}: {names}", stacklevel=2)
        if not arrays:
            raise DataError(f"{self.name}: none of the {len(files)} image files under {self.path} could be read")
        self._served[split] = served
        return torch.from_numpy(np.stack(arrays)), self._labels(served)

    def served_files(self, split: str) -> list[Path] | None:
        """The file of each image of ``split`` in order (unreadable files left out), once the split
        is loaded; None for a folder decoded batch by batch, where an unreadable file is replaced
        by the next one on the fly."""
        if self.lazy:
            return None
        self.split_size(split)  # loads the split
        other = "test" if split == "train" else "train"
        return self._served.get(split, self._served.get(other))


class FacesFolder(ImageFolder):
    """A folder of face images (FFHQ, CelebA-HQ) with the paper's split and its style-based
    recipe: the authors' configs ``ffhq256.yaml`` / ``celeba-hq256.yaml`` (beta_rec, beta_kl,
    beta_neg per level, learning rate per level, 16 epochs per level, batch per level on one GPU,
    Adam betas (0, 0.99)). Files are sorted by name; the first ``TRAIN_SIZE`` train, the rest test
    (a folder of another size is split in the same proportion). Every growth level is served from
    the same files, downsampled on the fly (average pooling) from ``resolution``."""

    TRAIN_SIZE, TEST_SIZE = 60_000, 10_000
    # The configs' BETA_REC is for squared errors of images in [-1, 1]; genvae's images are in
    # [0, 1], where the same error is 4x smaller, so 4 x BETA_REC gives the authors' objective.
    BETA_REC, BETA_KL = 4 * 0.1, 0.2
    EPOCHS = 300
    has_test_split = True

    def __init__(self, path: str = "", resolution: int = 256, hflip: bool = True) -> None:
        if not path:
            raise ConfigError(f"the {self.name} dataset needs data.path, the directory holding its images (e.g. {self.name}/images256x256)")
        super().__init__(path, resolution, hflip, channels=3, labels=False)
        total = len(self.files)
        if total < 2:
            raise DataError(f"{self.name}: {self.path} holds {total} image file(s); a train / test split needs at least 2")
        if total == self.TRAIN_SIZE + self.TEST_SIZE:
            self.train_count = self.TRAIN_SIZE
        else:
            self.train_count = min(total - 1, max(1, round(total * self.TRAIN_SIZE / (self.TRAIN_SIZE + self.TEST_SIZE))))
        levels = int(math.log2(self.resolution)) - 1
        batches = [128, 128, 128, 32, 16, 8, 4, 4, 4][:levels]  # LOD_2_BATCH_1GPU, 4x4 first
        images_per_level = 16 * self.train_count  # EPOCHS_PER_LOD = 16
        growth_images = images_per_level * (levels - 1)
        steps = sum(-(-images_per_level // b) for b in batches[:-1]) + max(0, self.EPOCHS * self.train_count - growth_images) // batches[-1]
        self.recommended = {
            "train": {"batch_size": batches[-1], "steps": steps, "lr": 0.0015, "betas": [0.0, 0.99], "milestones": [],
                      "log_every": 100, "checkpoint_every": 5000, "figures_every": 5000},
            "arch": {"name": "style", "z_dim": 512, "w_dim": 512, "start_channels": 64, "max_channels": 512},
            "grow": {"start_resolution": 4, "images_per_level": images_per_level, "fade": 0.5, "batch_sizes": batches,
                     "lrs": [0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.002, 0.003, 0.003],
                     "beta_neg": [2048, 2048, 2048, 1024, 512, 512, 512, 512, 512]},
            "soft-intro": {"beta_rec": self.BETA_REC, "beta_kl": self.BETA_KL, "beta_neg": 512.0, "num_vae": -(-self.train_count // batches[0])},
            "vae": {"beta_rec": self.BETA_REC, "beta_kl": self.BETA_KL},
        }

    def split_files(self, split: str) -> list[Path]:
        return self.files[: self.train_count] if split == "train" else self.files[self.train_count :]


class FFHQ(FacesFolder):
    name = "ffhq"


class CelebAHQ(FacesFolder):
    name = "celeba-hq"
    TRAIN_SIZE, TEST_SIZE = 29_000, 1_000
    BETA_REC, BETA_KL = 4 * 0.05, 0.1


def read_image(path: str | Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """The image file ``path`` as uint8 pixels in ``mode`` ("L": (H, W), "RGB": (H, W, 3)),
    resized (shorter side, bicubic) and centre-cropped to ``size`` (width, height). Every image
    file a user gives genvae is read here.

    16-bit greyscale (modes I;16, I;16B, I;16L, or I with values above 255: Pillow opens 16-bit
    PNG and TIFF as either) is scaled to 8 bits, round(value / 257), where Pillow's own
    conversion would clip it at 255 (all white). Floating-point images (mode F) are read as
    [0, 1] (times 255) when all values lie in [0, 1], as [0, 255] when they lie there, and
    refused otherwise (DataError). A camera's EXIF orientation is applied (the image as a viewer
    shows it); an alpha channel is dropped, as by Pillow's convert. A file PIL cannot decode raises
    its OSError."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        im = ImageOps.exif_transpose(opened)
        if im.mode.startswith("I") or im.mode == "F":
            im = Image.fromarray(_to_8bit(np.asarray(im, dtype=np.float64), im.mode, path))
        im = ImageOps.fit(im.convert(mode), size, method=Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def _to_8bit(values: np.ndarray, mode: str, path: str | Path) -> np.ndarray:
    """Greyscale pixels of a 16-bit, 32-bit integer or float image as uint8 (see :func:`read_image`)."""
    low, high = float(values.min()), float(values.max())
    if mode == "F":
        if not (low >= 0 and high <= 255):  # also NaN
            raise DataError(f"{path}: a floating-point image with values in [{low:g}, {high:g}]; "
                            "genvae reads float images in [0, 1] or [0, 255]: save it as an 8- or 16-bit image")  # fmt: skip
        values = values * 255 if high <= 1 else values
    elif mode.startswith("I;16") or high > 255:
        values = values / 257
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def default_channels(resolution: int) -> list[int]:
    """Residual widths with the base at 4x4 (or the smallest exact size): 64, 128, 256, 512, ..."""
    levels = 1
    while resolution % (2 ** (levels + 1)) == 0 and resolution // (2 ** (levels + 1)) >= 4:
        levels += 1
    return [min(64 * 2**i, 512) for i in range(levels)]


def image_beta_rec(shape: tuple[int, ...]) -> float:
    """β_rec for images of ``shape``: the paper's 1 from 784 values (28×28 grey) up; smaller images
    get 784 / values, so that the summed reconstruction error weighs against the KL as it does at
    28×28. At β_rec = 1, 8×8 digits keep about 1 nat per image and come back blurred alike; at
    784 / 64 they keep 12 (docs/user-guide.md, "Data in memory")."""
    return max(1.0, 784 / math.prod(shape))
