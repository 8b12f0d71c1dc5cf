"""Image datasets from their standard files: MNIST, Fashion-MNIST, CIFAR-10, SVHN, and
scikit-learn's 8x8 digits (embedded, no download); this plugin also registers the folder datasets
of ``image_folder.py`` (``folder``, ``ffhq``, ``celeba-hq``) and ``image-array`` (``image_array.py``). Nothing is ever downloaded: files
are read from ``root``. Readers: IDX (.gz or raw) for (Fashion-)MNIST, the python pickles
(``cifar-10-batches-py/``) or ``cifar10_prefix.npz`` for CIFAR-10, torchvision's
``{train,test}_32x32.mat`` for SVHN. Pixels, batches and resumable streams: ``image_source.py``.

Recommended settings follow the paper (Appendix 9.2.2) and the authors' Soft-IntroVAE code:
CIFAR-10: z 128, channels (64, 128, 256), batch 32, lr 2e-4, β_rec = β_kl = 1, β_neg = 256,
220 epochs; (Fashion-)MNIST: z 32, channels (64, 128), batch 128, β_neg = 256, 200 epochs.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genvae.core.hookspecs import hookimpl
from genvae.errors import ConfigError, DataError
from genvae.plugins.datasets.image_array import ImageArray
from genvae.plugins.datasets.image_folder import FFHQ, CelebAHQ, ImageFolder, default_channels
from genvae.plugins.datasets.image_source import ImageData, shared_data_dirs

SPLITS = ("train", "test")


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
    """MNIST / Fashion-MNIST from the four standard IDX files (.gz or not); ``resolution`` other
    than their 28 resizes them (bilinear with antialiasing), e.g. to score them against a model of
    another size (OOD data for a 16×16 run)."""

    FILES = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    shape = (1, 28, 28)
    num_classes = 10
    folder = ""  # torchvision's subfolder name (MNIST, FashionMNIST)
    hint = ""

    def __init__(self, root: str = "", split: str = "train", resolution: int = 28) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"data.split must be one of {', '.join(SPLITS)}, got {split!r}")
        if resolution <= 0:
            raise ConfigError(f"data.resolution must be positive, got {resolution}")
        self.split = split
        self.shape = (1, resolution, resolution)
        self.search = self.search_dirs(root)
        self.recommended = {
            "train": _train_settings(200, 60_000, 128),
            "arch": {"name": "residual", "z_dim": 32, "channels": default_channels(resolution)},
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
        if images.shape[1:] != (1, 28, 28) or len(labels) != len(images):
            raise DataError(f"{image_file}: expected (1, 28, 28) images with one label each, got {tuple(images.shape)}")
        if self.shape[-1] != 28:
            resized = F.interpolate(images.float(), size=self.shape[1:], mode="bilinear", align_corners=False, antialias=True)
            images = resized.round_().clamp_(0, 255).to(torch.uint8)
        return images, labels


class MNIST(IDXImages):
    name = "mnist"
    folder = "MNIST"


class FashionMNIST(IDXImages):
    name = "fashion-mnist"
    folder = "FashionMNIST"
    hint = "; `apt-get install dataset-fashion-mnist` provides them in /usr/share/datasets/fashion-mnist"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

    def default_dirs(self) -> list[Path]:
        return [Path("/usr/share/datasets/fashion-mnist"), *shared_data_dirs("fashion-mnist")]


class CIFAR10(ImageData):
    """CIFAR-10: ``cifar-10-batches-py/`` (the python pickles) or ``cifar10_prefix.npz`` in ``root``."""

    name = "cifar10"
    shape = (3, 32, 32)
    num_classes = 10
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
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
            "arch": {"name": "residual", "z_dim": 128, "channels": [64, 128, 256]},
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
            "arch": {"name": "residual", "z_dim": 128, "channels": [64, 128, 256]},
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
            "arch": {"name": "residual", "z_dim": 16, "channels": [16, 32]},
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


DATASETS: dict[str, Callable[..., ImageData]] = {
    "mnist": MNIST,
    "fashion-mnist": FashionMNIST,
    "cifar10": CIFAR10,
    "svhn": SVHN,
    "folder": ImageFolder,
    "ffhq": FFHQ,
    "celeba-hq": CelebAHQ,
    "digits": Digits,
    "image-array": ImageArray,
}


@hookimpl
def genvae_register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    for name, factory in DATASETS.items():
        register(name, factory)
