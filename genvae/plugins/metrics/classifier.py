"""``classifier`` features: FID / KID / precision-recall in the feature space of a small classifier
trained on the dataset itself — the usual stand-in for Inception on MNIST-like data, and the
way to compare models where the Inception weights cannot be had.

``genvae eval train-classifier fashion-mnist --out clf/`` trains :class:`SmallClassifier` on the
labelled training split and writes ``clf/model.safetensors`` and ``clf/config.json`` (input
shape, classes, training data, steps, test accuracy, the weights' SHA-256). ``--features
classifier --feature-weights clf/`` then uses its 128-d penultimate activations.

Like every non-Inception extractor, the distances are **not comparable to published FID**: they
compare models on the same data with the same classifier. The classifier's weight hash is part of
the feature settings, so statistics made with another classifier are refused.

Network (no batch normalisation, so a sample's features never depend on its batch):
conv3×3(32)–ReLU–maxpool2, conv3×3(64)–ReLU–maxpool2, conv3×3(128)–ReLU, average pool to 4×4,
linear(128)–ReLU (= the features), linear(classes). The 4×4 pool keeps where things are (a global
average pool lost it: 0.83 test accuracy on Fashion-MNIST against 0.89 with the 4×4 grid, same
training; docs/results.md) and works at any input size. Input: images rounded to uint8 (as every
extractor here), scaled back to [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genvae.core.checkpoint import atomic_save_file, atomic_write_text
from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import DataSource
from genvae.errors import ConfigError, DataError
from genvae.plugins.metrics.image_prep import quantize_uint8
from genvae.plugins.metrics.ood import iter_images

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FEATURE_DIM = 128
POOLED = 4  # the last feature map is average-pooled to POOLED × POOLED cells
NETWORK = "small-cnn-pool4"  # recorded in config.json; classifiers of another network are refused


class SmallClassifier(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(POOLED)
        self.features = nn.Linear(128 * POOLED * POOLED, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return F.relu(self.features(self.pool(self.body(x)).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


@torch.no_grad()
def accuracy(model: SmallClassifier, data: DataSource, split: str = "test", n: int | None = None, batch_size: int = 500) -> float:
    model.eval()
    correct = total = 0
    for x, y in iter_images(data, split, n, batch_size, seed=1):
        correct += int((model(_prepare(x)).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def _prepare(x: Tensor) -> Tensor:
    return quantize_uint8(x).float() / 255.0


def train_classifier(data: DataSource, label: str, out_dir: str | Path, steps: int = 2000, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, log: Any = None) -> dict[str, Any]:  # fmt: skip
    """Train :class:`SmallClassifier` on ``data``'s labelled training split; write it to ``out_dir``."""
    if getattr(data, "kind", "images") != "images" or len(data.shape) != 3:
        raise DataError(f"a feature classifier needs an image dataset; {label} holds samples of shape {tuple(data.shape)}")
    if not data.num_classes:
        raise DataError(f"{label} has no labels; a feature classifier needs a labelled dataset (or use --features=random-conv)")
    if steps < 1:
        raise ConfigError(f"--steps must be positive, got {steps}")
    torch.manual_seed(seed)
    model = SmallClassifier(data.shape[0], data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    model.train()
    for step, batch in enumerate(data.train_stream(batch_size, seed=seed), start=1):
        loss = F.cross_entropy(model(_prepare(batch.x)), batch.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and (step % max(steps // 10, 1) == 0 or step == steps):
            log(f"classifier: step {step}/{steps} loss {loss.item():.4f}")
        if step >= steps:
            break
    held_out = getattr(data, "has_test_split", True)  # a plain folder's "test" images are its training images
    acc = accuracy(model, data, "test")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS)
    info = {"features": "classifier", "network": NETWORK, "shape": list(data.shape), "num_classes": data.num_classes, "data": label, "steps": steps,
            "batch_size": batch_size, "lr": lr, "seed": seed, "test_accuracy" if held_out else "train_accuracy": acc, "seconds": round(time.perf_counter() - start, 1),
            "weights_sha256": _sha256(out / WEIGHTS)}  # fmt: skip
    atomic_write_text(out / CONFIG, json.dumps(info, indent=2) + "\n")
    return info


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ClassifierFeatures(nn.Module):
    """The penultimate activations (128-d) of a classifier written by :func:`train_classifier`."""

    name = "classifier"
    dim = FEATURE_DIM

    def __init__(self, path: str | Path | None) -> None:
        super().__init__()
        if path is None:
            raise ConfigError("--features=classifier needs --feature-weights DIR; make one with "
                              "'genvae eval train-classifier DATA --out DIR' (a few minutes on a CPU)")  # fmt: skip
        folder = Path(path).expanduser()
        if folder.is_file():
            folder = folder.parent
        if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
            raise DataError(f"{folder} holds no classifier ({WEIGHTS} + {CONFIG}); make one with 'genvae eval train-classifier DATA --out {folder}'")
        self.info = json.loads((folder / CONFIG).read_text())
        if self.info.get("network") != NETWORK:
            raise DataError(f"{folder} holds a classifier of an older network ({self.info.get('network', 'global-average-pooled')}); "
                            f"retrain it with 'genvae eval train-classifier DATA --out {folder}'")  # fmt: skip
        sha = _sha256(folder / WEIGHTS)
        if sha != self.info.get("weights_sha256"):
            raise DataError(f"{folder / WEIGHTS} does not match the SHA-256 in its {CONFIG} (file changed or corrupt); retrain it")
        from safetensors.torch import load_file

        self.folder = folder.resolve()
        self.shape = tuple(self.info["shape"])
        self.net = SmallClassifier(self.shape[0], self.info["num_classes"])
        self.net.load_state_dict(load_file(str(folder / WEIGHTS)))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ClassifierFeatures":
        return super().train(False)

    def settings(self) -> dict[str, Any]:
        return {"features": self.name, "dim": self.dim, "quantize": "uint8-round", "weights_sha256": self.info["weights_sha256"],
                "weights_path": str(self.folder),  # where it was: a reference made with it finds it again
                "classifier_data": self.info["data"], **{f"classifier_{k}": v for k, v in self.info.items() if k.endswith("_accuracy")}}  # fmt: skip

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if tuple(images.shape[1:]) != self.shape:
            channels = (f" (a folder is read as RGB unless its spec says channels={images.shape[1]}: "
                        f"folder:path=DIR,channels={images.shape[1]},resolution={images.shape[-1]})") if images.shape[1] != self.shape[0] else ""
            raise DataError(f"the classifier was trained on images of shape {self.shape}, got {tuple(images.shape[1:])}; "
                            f"train one on this data with 'genvae eval train-classifier'{channels}")  # fmt: skip
        device = next(self.net.parameters()).device
        return self.net.embed(_prepare(images).to(device))


def _factory(feature_weights: str | Path | None = None, **_: Any) -> ClassifierFeatures:
    return ClassifierFeatures(feature_weights)


@hookimpl
def genvae_register_features(register) -> None:  # type: ignore[no-untyped-def]
    register("classifier", _factory)


__all__ = ["ClassifierFeatures", "SmallClassifier", "accuracy", "train_classifier"]
