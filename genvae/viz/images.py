"""Image grids for trained models: prior samples, reconstructions (the paper's odd-row real /
even-row reconstruction layout) and the 4-corner latent interpolation of Appendix 9.4.2.

All randomness comes from an explicit ``torch.Generator``; nothing touches the global RNG.
Functions return grids as float tensors (C, H, W) in [0, 1]; ``save_grid`` writes a PNG.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from genvae.core.interfaces import Models, num_classes_of
from genvae.errors import ConfigError, DataError

if TYPE_CHECKING:
    from PIL import Image as PILImage, ImageFont


def make_grid(images: Tensor, nrow: int, padding: int = 2) -> Tensor:
    """(N, C, H, W) -> one (C, H', W') grid with ``nrow`` images per row, clamped to [0, 1]."""
    from torchvision.utils import make_grid as tv_make_grid

    return tv_make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=padding, pad_value=1.0)


MIN_SIDE = 512  # small grids are enlarged to at least this many pixels on their longer side


def display_scale(height: int, width: int) -> int:
    """The whole-number enlargement that brings a grid's longer side to ``MIN_SIDE`` or more
    (1 for grids already that large)."""
    return max(1, -(-MIN_SIDE // max(height, width)))


def save_grid(grid: Tensor, path: Path, caption: str | None = None) -> Path:
    """Write a (C, H, W) grid in [0, 1] as a picture (grey when C == 1; the format the suffix
    names, PNG for .png). A small grid (16-pixel digits: 146 px) is enlarged by a whole factor,
    nearest neighbour, so that every pixel stays a sharp square and the picture is large enough
    to look at. ``caption``: a line of text on a white strip above the grid (wrapped to its width)
    saying what the rows and columns are."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = display_scale(*grid.shape[-2:])
    if scale > 1:
        grid = grid.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    pixels = grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if caption:
        image = with_caption(image, caption)
    image.save(path)
    return path


CAPTION_SIZE = 15  # font size of captions, in pixels
LINE_HEIGHT = CAPTION_SIZE + 4


def with_caption(image: PILImage.Image, caption: str) -> PILImage.Image:
    """``image`` below a white strip holding ``caption``, wrapped to the image's width."""
    from PIL import Image, ImageDraw

    lines = caption_lines(caption, image.width)
    strip = _strip_height(len(lines))
    out = Image.new(image.mode, (image.width, image.height + strip), "white")
    out.paste(image, (0, strip))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((CAPTION_SIZE // 2, CAPTION_SIZE // 4 + i * LINE_HEIGHT), line, fill="black", font=_caption_font())
    return out


def caption_height(caption: str, width: int) -> int:
    """Height in pixels of the strip that ``with_caption`` adds above a picture ``width`` wide."""
    return _strip_height(len(caption_lines(caption, width)))


def _strip_height(lines: int) -> int:
    return LINE_HEIGHT * lines + CAPTION_SIZE // 2


@functools.lru_cache(maxsize=1)
def _caption_font() -> ImageFont.FreeTypeFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=CAPTION_SIZE)


def caption_lines(caption: str, width: int) -> list[str]:
    """``caption`` split at spaces into lines that fit a picture ``width`` pixels wide (a longer
    word alone)."""
    font = _caption_font()
    width -= CAPTION_SIZE  # margins
    lines: list[str] = []
    for word in caption.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def is_conditional(models: Models) -> int:
    """Number of classes the model is conditioned on (0 when unconditional)."""
    encoder = getattr(models.encoder, "module", models.encoder)  # unwrap DistributedDataParallel
    return num_classes_of(encoder)


@torch.no_grad()
def sample_grid(models: Models, n: int = 64, seed: int = 0, columns: int = 8) -> Tensor:
    """Decoder samples from the prior N(0, I). Conditional models: one row per class."""
    generator = torch.Generator().manual_seed(seed)
    num_classes = is_conditional(models)
    device = models.device
    if num_classes:
        y = torch.arange(num_classes).repeat_interleave(columns)
        z = torch.randn(len(y), models.z_dim, generator=generator)
        x = models.decode(z.to(device), y.to(device))
    else:
        z = torch.randn(n, models.z_dim, generator=generator)
        x = models.decode(z.to(device))
    return make_grid(x, nrow=columns)


def class_rows_grid(x: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """Images ``x`` of classes ``y`` in one row per class, in the order drawn; a class with
    fewer images than the longest row is filled up with white."""
    columns = max(1, max(int((y == c).sum()) for c in range(num_classes)))
    cells = torch.ones(num_classes * columns, *x.shape[1:])
    for c in range(num_classes):
        row = x[y == c]
        cells[c * columns : c * columns + len(row)] = row.detach().float().cpu()
    return make_grid(cells, nrow=columns)


@torch.no_grad()
def reconstruction_grid(models: Models, x: Tensor, y: Tensor | None = None, columns: int = 8) -> Tensor:
    """Odd rows: real images; even rows: their reconstructions D(mu(x)) (as the paper's figures)."""
    device = models.device
    rows = max(1, len(x) // columns)
    x = x[: rows * columns].to(device)
    y = None if y is None or not is_conditional(models) else y[: rows * columns].to(device)
    mu, _ = models.encode(x, y)
    x_rec = models.decode(mu, y)
    pairs = torch.stack([x.view(rows, columns, *x.shape[1:]), x_rec.view(rows, columns, *x.shape[1:])], dim=1)
    return make_grid(pairs.reshape(-1, *x.shape[1:]), nrow=columns)


def pair_rows_grid(x: Tensor, x_rec: Tensor, columns: int = 8) -> Tensor:
    """Odd rows ``x``, even rows ``x_rec``, ``columns`` per row (fewer for fewer images); the
    last row pair is filled up with white."""
    columns = min(columns, len(x))
    rows = -(-len(x) // columns)
    blank = torch.ones(rows * columns - len(x), *x.shape[1:], dtype=x.dtype)
    real, rec = (torch.cat([t.detach().float().cpu(), blank]).view(rows, columns, *x.shape[1:]) for t in (x, x_rec))
    return make_grid(torch.stack([real, rec], dim=1).reshape(-1, *x.shape[1:]), nrow=columns)


@torch.no_grad()
def interpolation_grid(models: Models, corners: Tensor, steps: int = 8, labels: Tensor | None = None) -> Tensor:
    """Bilinear interpolation between the latent codes mu(x) of four corner images (Appendix 9.4.2).

    ``corners`` is (4, C, H, W): top-left, top-right, bottom-left, bottom-right. Returns a grid of
    steps x steps decoded images (the corners' reconstructions at the four corners). For a
    conditional model pass ``labels`` (4,); each cell is decoded with its nearest corner's label.
    """
    if corners.shape[0] != 4:
        raise ValueError(f"interpolation_grid needs exactly 4 corner images, got {corners.shape[0]}")
    device = models.device
    conditional = is_conditional(models)
    if conditional and labels is None:
        raise ValueError("this model is class-conditional: pass the 4 corner labels")
    y = labels.to(device) if conditional and labels is not None else None
    mu, _ = models.encode(corners.to(device), y)
    t = torch.linspace(0, 1, steps, device=device, dtype=mu.dtype)
    a, b = torch.meshgrid(t, t, indexing="ij")  # a: down the rows, b: along the columns
    a, b = a.reshape(-1, 1), b.reshape(-1, 1)
    z = (1 - a) * (1 - b) * mu[0] + (1 - a) * b * mu[1] + a * (1 - b) * mu[2] + a * b * mu[3]
    y_cells = None
    if y is not None:
        nearest = (a.squeeze(1) >= 0.5).long() * 2 + (b.squeeze(1) >= 0.5).long()
        y_cells = y[nearest]
    return make_grid(models.decode(z, y_cells), nrow=steps)


SAMPLES_CAPTION = "samples: the decoder's images of codes z ~ N(0, I)"
CONDITIONAL_SAMPLES_CAPTION = "samples: the decoder's images of codes z ~ N(0, I), one row per class"
RECONSTRUCTIONS_CAPTION = "odd rows: test images; even rows: their reconstructions D(mu(x))"
TRAINING_RECONSTRUCTIONS_CAPTION = "odd rows: training images (no held-out split); even rows: their reconstructions D(mu(x))"
INTERPOLATION_CAPTION = "corners: the reconstructions of the four images (top left, top right, bottom left, bottom right); between: the decoded bilinear mixes of their codes"
TRANSLATION_CAPTION = "each cell: the class (identity) of its row's left image, the content (pose) of its column's top image"


def samples_caption(models: Models) -> str:
    return CONDITIONAL_SAMPLES_CAPTION if is_conditional(models) else SAMPLES_CAPTION


__all__ = ["make_grid", "save_grid", "sample_grid", "reconstruction_grid", "interpolation_grid", "is_conditional"]


def check_picture_out(path: str | Path) -> Path:
    """``path`` when Pillow writes pictures with its extension; a one-line ConfigError otherwise
    (checked before any work, so that a long command does not end in a traceback)."""
    from PIL import Image

    path = Path(path)
    writable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
    if path.suffix.lower() not in writable:
        raise ConfigError(f"--out {path.name!r} is not a picture format; end it in .png or .jpg (or another extension Pillow writes: .webp, .tif, ...)")
    return path


def load_readable_images(paths: Sequence[str | Path], shape: tuple[int, ...], limit: int | None = None) -> tuple[Tensor, list[Path]]:
    """:func:`load_images` of the first ``limit`` (all: None) of ``paths`` that can be read, and
    their paths: as the folder dataset, an unreadable file (corrupt, not an image, a dangling
    link) is skipped with one warning naming them. A path that does not exist is still an error."""
    import warnings

    kept: list[Path] = []
    images: list[Tensor] = []
    skipped: list[str] = []
    for p in map(Path, paths):
        if limit is not None and len(kept) >= limit:
            break
        try:
            images.append(load_images([p], shape)[0])
            kept.append(p)
        except DataError:
            if not (p.is_file() or p.is_symlink()):  # a typo or a directory: say so
                raise
            skipped.append(str(p))
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s): {', '.join(skipped[:5])}{more}", stacklevel=2)
    if not images:
        raise DataError(f"none of the {len(skipped)} image files could be read ({', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''})")
    return torch.stack(images), kept


def load_images(paths: Sequence[str | Path], shape: tuple[int, ...]) -> Tensor:
    """Image files as (N, C, H, W) in [0, 1], converted to ``shape``'s channels (grey or RGB)
    and resized (shorter side) and centre-cropped to its size."""
    from genvae.plugins.datasets.image_folder import read_image

    c, h, w = shape
    mode = "L" if c == 1 else "RGB"
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            raise DataError(f"{path} is a directory, not an image file; give image files")
        if not path.is_file():
            raise DataError(f"image file {path} does not exist; check the path (images are files, folders of them, or one .npy / .npz array)")
        try:
            array = read_image(path, mode, (w, h))
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        t = torch.from_numpy(array.astype("float32") / 255.0)
        out.append(t[None] if c == 1 else t.permute(2, 0, 1))
    return torch.stack(out)
