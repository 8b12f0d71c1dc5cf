"""Image datasets: MNIST, Fashion-MNIST, CIFAR-10, SVHN, any folder of images, and scikit-learn's
8x8 digits (embedded, no download). Nothing is ever downloaded: files are read from ``root``.

Every source keeps its pixels as a uint8 tensor (N, C, H, W) in memory, loaded on first use,
and hands out float32 batches in [0, 1]. ``train_stream`` shuffles each epoch with a
``torch.Generator`` seeded by ``seed + epoch``, gives each rank a disjoint slice of the
permutation, and its ``state_dict`` is (epoch, position), so a resumed run continues exactly
mid-epoch. Readers: IDX (.gz or raw) for (Fashion-)MNIST, the python pickles
(``cifar-10-batches-py/``) or ``cifar10_prefix.npz`` for CIFAR-10, torchvision's
``{train,test}_32x32.mat`` for SVHN, PIL for folders.

Recommended settings follow the paper (Appendix 9.2.2) and the authors' Soft-IntroVAE code:
CIFAR-10: z 128, channels (64, 128, 256), batch 32, lr 2e-4, β_rec = β_kl = 1, β_neg = 256,
220 epochs; (Fashion-)MNIST: z 32, channels (64, 128), batch 128, β_neg = 256, 200 epochs.
"""

from __future__ import annotations

import gzip
import math
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Batch, BatchStream, DataSource, Models
from genvae.errors import ConfigError, DataError

SPLITS = ("train", "test")
PRELOAD_LIMIT_BYTES = 2 * 1024**3  # folders larger than this (as uint8 pixels) are decoded per batch
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def shared_data_dirs(name: str) -> list[Path]:
    """Default places for a dataset: ``../shared/data/<name>`` from the working directory and
    from the project checkout (developer machines), then ``./data/<name>``."""
    checkout = Path(__file__).resolve().parents[3]
    candidates = [Path.cwd().parent / "shared" / "data" / name, checkout.parent / "shared" / "data" / name, Path.cwd() / "data" / name]
    unique: list[Path] = []
    for c in candidates:
        c = c.resolve()
        if c not in unique:
            unique.append(c)
    return unique


def _train_settings(epochs: int, train_size: int, batch_size: int, lr: float = 2e-4) -> dict[str, Any]:
    return {
        "batch_size": batch_size,
        "steps": epochs * train_size // batch_size,
        "lr": lr,
        "milestones": [],  # the authors' MultiStepLR milestone (epoch 350) lies beyond training
        "log_every": 100,
        "checkpoint_every": 5000,
        "figures_every": 5000,
    }


# --------------------------------------------------------------------------------------------
# The data source and its stream
# --------------------------------------------------------------------------------------------


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
        if self.shard_size == 0:
            raise DataError(f"{source.name}: {self.size} training images cannot be split over {world_size} processes")
        self.epoch, self.position = 0, 0
        self._cached: tuple[int, Tensor, Tensor | None] | None = None

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

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if self.position >= self.shard_size:
            raise DataError(f"cannot resume {self.source.name} at position {self.position}: an epoch has {self.shard_size} images per process")


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
        size = self.split_size("test")
        perm = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
        index = perm.repeat(-(-n // size))[:n]
        return self.get(index, "test")

    def iter_split(self, split: str = "test", batch_size: int = 256) -> Iterator[Batch]:
        """Every image of a split once, in order (for evaluation)."""
        size = self.split_size(split)
        for start in range(0, size, batch_size):
            yield self.get(torch.arange(start, min(size, start + batch_size)), split)

    def plot_samples(self, x: Tensor, path: Path) -> None:
        """Save generated images ``x`` (N, C, H, W) as one grid, 8 per row (``genvae sample --out FILE.png``)."""
        from genvae.viz.images import make_grid, save_grid

        save_grid(make_grid(x.reshape(-1, *self.shape), nrow=8), Path(path))

    def write_figures(self, models: Models, out_dir: Path, seed: int = 0) -> list[Path]:
        """``samples.png`` (prior samples; one row per class for a conditional model) and
        ``reconstructions.png`` (odd rows: test images, even rows: reconstructions)."""
        from genvae.viz.images import reconstruction_grid, sample_grid, save_grid

        out_dir = Path(out_dir)
        with torch.no_grad():
            paths = [save_grid(sample_grid(models, n=64, seed=seed), out_dir / "samples.png")]
            test = self.test_batch(32, seed=seed)
            paths.append(save_grid(reconstruction_grid(models, test.x, test.y), out_dir / "reconstructions.png"))
        return paths


# --------------------------------------------------------------------------------------------
# File readers
# --------------------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), gzipped or not, as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(dirs: list[Path], names: list[str]) -> list[Path] | None:
    """The first directory holding all ``names`` (each as given or gzipped)."""
    for d in dirs:
        found = []
        for name in names:
            hit = next((d / n for n in (name, name + ".gz") if (d / n).is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    return None


class IDXImages(ImageData):
    """MNIST / Fashion-MNIST from the four standard IDX files (.gz or not)."""

    FILES = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    shape = (1, 28, 28)
    num_classes = 10
    folder = ""  # torchvision's subfolder name (MNIST, FashionMNIST)
    hint = ""

    def __init__(self, root: str = "", split: str = "train") -> None:
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"data.split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.split = split
        self.search = self.search_dirs(root)
        self.recommended = {
            "train": _train_settings(200, 60_000, 128),
            "arch": {"z_dim": 32, "channels": [64, 128]},
            "vae": {"beta_rec": 1.0, "beta_kl": 1.0},
            "soft-intro": {"beta_rec": 1.0, "beta_kl": 1.0, "beta_neg": 256.0},
        }
        self.files(split)  # fail now, not at the first batch

    def search_dirs(self, root: str) -> list[Path]:
        bases = [Path(root).expanduser()] if root else self.default_dirs()
        return [d for b in bases for d in (b, b / self.folder / "raw")]

    def default_dirs(self) -> list[Path]:
        return shared_data_dirs(self.name)

    def files(self, split: str) -> list[Path]:
        # ``split`` names the training split; the test split is always t10k
        names = list(self.FILES[split])
        found = _find(self.search, names)
        if found is None:
            where = ", ".join(str(d) for d in dict.fromkeys(self.search[::2]))
            other = "test" if split == "train" else "train"
            fallback = ""
            if _find(self.search, list(self.FILES[other])) is not None and split == "train":
                fallback = "; only the test split is there: set data.split=test to use it (e.g. as OOD data)"
            raise DataError(
                f"{self.name}: {split} files {' and '.join(n + '[.gz]' for n in names)} not found in {where} "
                f"(set data.root to their folder){fallback}{self.hint}"
            )
        return found

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        image_file, label_file = self.files(self.split if split == "train" else "test")
        images = torch.from_numpy(read_idx(image_file).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(label_file).astype(np.int64))
        if images.shape[1:] != self.shape or len(labels) != len(images):
            raise DataError(f"{image_file}: expected {self.shape} images with one label each, got {tuple(images.shape)}")
        return images, labels


class MNIST(IDXImages):
    name = "mnist"
    folder = "MNIST"


class FashionMNIST(IDXImages):
    name = "fashion-mnist"
    folder = "FashionMNIST"
    hint = "; `apt-get install dataset-fashion-mnist` provides them in /usr/share/datasets/fashion-mnist"

    def default_dirs(self) -> list[Path]:
        return [Path("/usr/share/datasets/fashion-mnist"), *shared_data_dirs("fashion-mnist")]


class CIFAR10(ImageData):
    """CIFAR-10: ``cifar-10-batches-py/`` (the python pickles) or ``cifar10_prefix.npz`` in ``root``."""

    name = "cifar10"
    shape = (3, 32, 32)
    num_classes = 10
    BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

    def __init__(self, root: str = "", split: str = "train") -> None:
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"data.split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.split = split
        bases = [Path(root).expanduser()] if root else shared_data_dirs("cifar10")
        self.source = self._locate(bases)
        self.recommended = {
            "train": _train_settings(220, 50_000, 32),
            "arch": {"z_dim": 128, "channels": [64, 128, 256]},
            "vae": {"beta_rec": 1.0, "beta_kl": 1.0},
            "soft-intro": {"beta_rec": 1.0, "beta_kl": 1.0, "beta_neg": 256.0},
        }

    def _locate(self, bases: list[Path]) -> Path:
        for base in bases:
            for d in (base / "cifar-10-batches-py", base):
                if all((d / b).is_file() for b in self.BATCHES["train"] + self.BATCHES["test"]):
                    return d
            if (base / "cifar10_prefix.npz").is_file():
                return base / "cifar10_prefix.npz"
        where = ", ".join(str(b) for b in bases)
        raise DataError(
            f"cifar10: expected cifar-10-batches-py/ (data_batch_1..5, test_batch) or cifar10_prefix.npz in {where} "
            "(set data.root to their folder)"
        )

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        keys = self.BATCHES[self.split if split == "train" else "test"]
        xs, ys = [], []
        if self.source.suffix == ".npz":
            with np.load(self.source) as npz:
                for key in keys:
                    x = npz[f"{key}_x"]
                    xs.append(x.reshape(-1, 3, 32, 32))
                    ys.append(npz[f"{key}_labels_all"][: len(x)])
        else:
            for key in keys:
                with open(self.source / key, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(entry["labels"]))
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys).astype(np.int64))


class SVHN(ImageData):
    """SVHN cropped digits: torchvision's ``train_32x32.mat`` / ``test_32x32.mat`` in ``root``."""

    name = "svhn"
    shape = (3, 32, 32)
    num_classes = 10

    def __init__(self, root: str = "", split: str = "train") -> None:
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"data.split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.split = split
        self.bases = [Path(root).expanduser()] if root else shared_data_dirs("svhn")
        self.recommended = {
            "train": _train_settings(220, 73_257, 32),
            "arch": {"z_dim": 128, "channels": [64, 128, 256]},
            "vae": {"beta_rec": 1.0, "beta_kl": 1.0},
            "soft-intro": {"beta_rec": 1.0, "beta_kl": 1.0, "beta_neg": 256.0},
        }
        self.file(split)

    def file(self, split: str) -> Path:
        name = f"{split}_32x32.mat"
        for base in self.bases:
            if (base / name).is_file():
                return base / name
        raise DataError(f"svhn: expected {name} in {', '.join(str(b) for b in self.bases)} (set data.root to its folder)")

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        from scipy.io import loadmat

        mat = loadmat(self.file(self.split if split == "train" else "test"))
        images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)))  # (H, W, C, N) -> (N, C, H, W)
        labels = mat["y"].astype(np.int64).squeeze(1)
        labels[labels == 10] = 0  # SVHN stores the digit 0 as class 10
        return torch.from_numpy(images), torch.from_numpy(labels)


class Digits(ImageData):
    """scikit-learn's 1,797 real 8x8 digits, bilinearly upsampled to 16x16 (shipped in the wheel).

    A fixed, seeded split holds out 297 images as the test split."""

    name = "digits"
    shape = (1, 16, 16)
    num_classes = 10
    TEST_SIZE = 297

    def __init__(self) -> None:
        super().__init__()
        self.recommended = {
            # measured with `genvae train -d digits -a residual` on the 2-core CPU machine (1 torch
            # thread): 1,500 steps (32 epochs) in 2.5-3.5 minutes on a machine shared with other jobs;
            # sharp test reconstructions (rec ~3.5 per image) and recognisable prior samples. β_rec = 4
            # (not 1): with 256 pixels of 8x8 digits upsampled, β_rec = 1 leaves KL ~4 nats and blur.
            "train": {"batch_size": 32, "steps": 1500, "lr": 5e-4, "milestones": [], "log_every": 50,
                      "checkpoint_every": 500, "figures_every": 500},
            "arch": {"z_dim": 16, "channels": [16, 32]},
            "vae": {"beta_rec": 4.0, "beta_kl": 1.0},
            "soft-intro": {"beta_rec": 4.0, "beta_kl": 1.0, "beta_neg": 256.0, "num_vae": 500},
        }

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.images).to(torch.float32).div_(16.0).unsqueeze(1)
        x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp_(0, 1)
        images = x.mul_(255.0).round_().to(torch.uint8)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(1234))
        index = perm[: self.TEST_SIZE] if split == "test" else perm[self.TEST_SIZE :]
        index = index.sort().values
        return images[index].contiguous(), labels[index].contiguous()


class ImageFolder(ImageData):
    """Every image under ``path`` (recursively), RGB, resized (shorter side) and centre-cropped
    to ``resolution``. Unreadable files are skipped with one warning listing them. No labels; no
    held-out split exists, so ``test_batch`` draws from the same images. Folders too large to
    hold as uint8 (``PRELOAD_LIMIT_BYTES``) are decoded batch by batch instead, and then each
    unreadable file is replaced by the next readable one, with a warning when first met."""

    name = "folder"
    num_classes = 0

    def __init__(self, path: str = "", resolution: int = 64, hflip: bool = False) -> None:
        super().__init__()
        if not path:
            raise ConfigError("the folder dataset needs data.path, the directory holding the images")
        if resolution <= 0:
            raise ConfigError(f"data.resolution must be positive, got {resolution}")
        self.path, self.resolution, self.hflip = Path(path).expanduser(), int(resolution), bool(hflip)
        self.shape = (3, self.resolution, self.resolution)
        if not self.path.is_dir():
            raise DataError(f"folder: {self.path} is not a directory; set data.path to a folder of images ({', '.join(IMAGE_SUFFIXES)})")
        self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self._bad: set[Path] = set()
        if not self.files:
            raise DataError(f"folder: no image files ({', '.join(IMAGE_SUFFIXES)}) under {self.path}")
        self.recommended = {
            "train": {"batch_size": 32, "lr": 2e-4},
            "arch": {"z_dim": 128, "channels": _default_channels(self.resolution)},
            "soft-intro": {"beta_rec": 1.0, "beta_kl": 1.0, "beta_neg": 256.0},
        }

    def _read(self, path: Path) -> np.ndarray | None:
        from PIL import Image, ImageOps

        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                im = ImageOps.fit(im, (self.resolution, self.resolution), method=Image.Resampling.BICUBIC)
                return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
        except Exception:  # any unreadable or corrupt file is skipped, never a crash mid-epoch
            return None

    @property
    def lazy(self) -> bool:
        """Too large to hold as uint8 in memory: decode each batch from the files instead."""
        return len(self.files) * 3 * self.resolution**2 > PRELOAD_LIMIT_BYTES

    def split_files(self, split: str) -> list[Path]:
        """The files of ``split``; a plain folder has no held-out split, both are every file."""
        return self.files

    def split_size(self, split: str) -> int:
        return len(self.split_files(split)) if self.lazy else super().split_size(split)

    def get(self, index: Tensor, split: str = "train") -> Batch:
        if not self.lazy:
            return super().get(index, split)
        files = self.split_files(split)
        arrays = []
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
        return Batch(torch.from_numpy(np.stack(arrays)).to(torch.float32).div_(255.0))

    def load_split(self, split: str) -> tuple[Tensor, Tensor | None]:
        files = self.split_files(split)
        other = "test" if split == "train" else "train"
        if other in self._splits and files is self.split_files(other):  # one set of images serves both splits
            return self._splits[other]
        arrays, bad = [], []
        for path in files:
            array = self._read(path)
            if array is None:
                bad.append(path)
            else:
                arrays.append(array)
        if bad:
            names = ", ".join(str(p.relative_to(self.path)) for p in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            warnings.warn(f"{self.name}: skipped {len(bad)} unreadable image file(s) of {len(files)} under {self.path}: {names}", stacklevel=2)
        if not arrays:
            raise DataError(f"{self.name}: none of the {len(files)} image files under {self.path} could be read")
        return torch.from_numpy(np.stack(arrays)), None


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

    def __init__(self, path: str = "", resolution: int = 256, hflip: bool = True) -> None:
        if not path:
            raise ConfigError(f"the {self.name} dataset needs data.path, the directory holding its images (e.g. {self.name}/images256x256)")
        super().__init__(path, resolution, hflip)
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
            "arch": {"z_dim": 512, "w_dim": 512, "start_channels": 64, "max_channels": 512},
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


def _default_channels(resolution: int) -> list[int]:
    """Residual widths with the base at 4x4 (or the smallest exact size): 64, 128, 256, 512, ..."""
    levels = 1
    while resolution % (2 ** (levels + 1)) == 0 and resolution // (2 ** (levels + 1)) >= 4:
        levels += 1
    return [min(64 * 2**i, 512) for i in range(levels)]


DATASETS: dict[str, Callable[..., ImageData]] = {
    "mnist": MNIST,
    "fashion-mnist": FashionMNIST,
    "cifar10": CIFAR10,
    "svhn": SVHN,
    "folder": ImageFolder,
    "ffhq": FFHQ,
    "celeba-hq": CelebAHQ,
    "digits": Digits,
}


@hookimpl
def genvae_register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    for name, factory in DATASETS.items():
        register(name, factory)
