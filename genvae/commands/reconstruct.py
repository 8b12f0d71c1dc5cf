"""``genvae reconstruct RUN IMAGES...``: your own images through a trained model, beside their
reconstructions D(μ(x)), and the error of each."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from genvae.commands.common import LABEL, class_index, console, load_image_run, user_errors

if TYPE_CHECKING:
    import torch


def image_files(inputs: list[Path]) -> list[Path]:
    """The image files named, and those under the folders named (sorted; see
    :func:`~genvae.plugins.datasets.image_folder.find_image_files`)."""
    from genvae.errors import DataError
    from genvae.plugins.datasets.image_folder import IMAGE_SUFFIXES, find_image_files

    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = find_image_files(path)
            if not found:
                raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {path}")
            files += found
        else:
            files.append(path)  # load_images says if it is missing or unreadable
    return files


def array_images(path: Path, shape: tuple[int, ...], limit: int, labels: str = "") -> tuple["torch.Tensor", "torch.Tensor | None"]:
    """The first ``limit`` images of an .npy / .npz array (the image-array dataset's files) as
    floats in [0, 1], taken as they are (not resized): they must have the run's ``shape``; and
    with ``labels`` (the name of an .npz's array of class labels) their labels, else None."""
    from genvae.errors import DataError
    from genvae.plugins.datasets.image_array import ImageArray

    array = ImageArray(str(path), labels=labels)
    images = array.images[:limit]
    if tuple(images.shape[1:]) != tuple(shape):
        raise DataError(f"{path} holds images of shape {tuple(images.shape[1:])} and the run's are {tuple(shape)}; an array is "
                        "taken as it is: give one of the run's shape, or the images as files, which are resized")  # fmt: skip
    return images.float() / 255.0, None if array.labels is None else array.labels[:limit]


def labels_key(loaded: Any, arrays: list[Path]) -> str:
    """The name of the class labels in ``arrays`` for a class-conditional run trained on an .npz
    (its data.labels), when every array holds them; else "" (--label gives the class)."""
    import numpy as np

    from genvae.core.interfaces import num_classes_of

    key = loaded.config.data.get("labels") if loaded.config.data.get("name") == "image-array" else ""
    if not (key and isinstance(key, str) and num_classes_of(loaded.encoder)):
        return ""
    for path in arrays:
        if path.suffix.lower() != ".npz":
            return ""
        with np.load(path, allow_pickle=False) as archive:  # reads the archive's list of arrays, not the arrays
            if key not in archive.files:
                return ""
    return key


def check_labels(labels: "torch.Tensor", path: Path, key: str, run: Any, loaded: Any) -> "torch.Tensor":
    """``labels`` (of ``path``'s array ``key``), refused beyond the run's classes."""
    from genvae.core.interfaces import num_classes_of
    from genvae.errors import DataError

    classes = num_classes_of(loaded.encoder)
    if len(labels) and int(labels.max()) >= classes:
        raise DataError(f"{path}'s labels {key!r} go up to {int(labels.max())}, and run {run} has {classes} classes (0..{classes - 1}); "
                        "give labels of the run's classes, or one class for all images with --label")  # fmt: skip
    return labels


@user_errors
def reconstruct(
    run: Path = typer.Argument(..., metavar="RUN", help="A run trained on images."),
    inputs: list[Path] = typer.Argument(..., metavar="IMAGES", help="Image files, folders of them, or .npy / .npz arrays of images."),
    out: Path = typer.Option(Path("reconstructions.png"), "--out", help="Output picture: PNG, or the format its extension names."),
    limit: int = typer.Option(64, "--max", help="Reconstruct at most this many images (the first, in name order)."),
    label: Optional[str] = LABEL,
) -> None:
    """Your images beside their reconstructions D(μ(x)), and each one's squared error.

    The picture has the images in odd rows and their reconstructions in even rows. The images
    are converted to the run's channels and resized and centre-cropped to its resolution. A
    class-conditional run needs their class: --label (or, for a run trained on an .npz with
    data.labels=NAME, .npz arrays holding labels under that name)."""
    import torch

    from genvae.errors import ConfigError
    from genvae.plugins.datasets.image_array import holds_images
    from genvae.viz.images import check_picture_out, load_readable_images, pair_rows_grid, save_grid

    if limit < 1:
        raise ConfigError(f"--max must be at least 1, got {limit}")
    check_picture_out(out)
    loaded = load_image_run(run, "reconstruct")
    arrays = [p for p in inputs if p.is_file() and holds_images(p)]
    key = labels_key(loaded, arrays) if label is None and len(arrays) == len(inputs) else ""
    y_class = None if key else class_index(loaded, run, label, "reconstruct")
    candidates = image_files([p for p in inputs if p not in arrays])
    x, files = load_readable_images(candidates, loaded.data.shape, limit) if candidates else (torch.empty(0, *loaded.data.shape), [])
    ys = []
    for path in arrays:
        images, labels = array_images(path, loaded.data.shape, max(limit - len(files), 0), key)
        x = torch.cat([x, images])
        files += [f"{path}[{i}]" for i in range(len(images))]
        candidates += [path] * len(images)
        if labels is not None:
            ys.append(check_labels(labels, path, key, run, loaded))
    y = torch.cat(ys) if key else None if y_class is None else torch.full((len(x),), y_class)
    with torch.no_grad():
        mu, _ = loaded.models.encode(x, y)
        x_rec = loaded.models.decode(mu, y).clamp(0, 1)
    errors = (x_rec - x).flatten(1).pow(2).sum(1)
    for path, error in zip(files, errors.tolist()):
        console.print(f"{path}  squared error {error:.4g}", soft_wrap=True, highlight=False)
    left_out = f"; the first {limit} of {len(candidates)} files, --max for more" if len(files) == limit < len(candidates) else ""
    console.print(f"mean squared error per image {errors.mean().item():.4g} ({len(files)} image{'s' * (len(files) != 1)}{left_out}, "
                  f"{loaded.data.shape[0]}×{loaded.data.shape[1]}×{loaded.data.shape[2]}, values in [0, 1])", soft_wrap=True)  # fmt: skip
    console.print(f"wrote {save_grid(pair_rows_grid(x, x_rec), out, 'odd rows: your images; even rows: their reconstructions D(mu(x))')}", soft_wrap=True)
