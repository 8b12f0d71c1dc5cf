"""``shapes3d-synthetic``: procedurally rendered objects with a known identity ("class") and a
known pose ("content"), for unsupervised image translation without downloading Cars3D.

An identity is a shape x a colour pattern: 4 shapes (circle, square, triangle, cross) x 3 two-
colour patterns drawn in the object's own frame (a half in a second colour, stripes, an off-centre
dot), 12 classes. The patterns make every pose visible, also the rotation of a circle. A pose is
(angle θ in radians, x, y) with the object's centre at (x, y) in image coordinates [-1, 1]
(x right, y down); the angle is free in [0, 2π), positions in [-``max_shift``, ``max_shift``].
``shapes`` restricts the identities drawn to the patterns on those shapes (``["square"]``: three
identities that differ in appearance only, as Cars3D's car models mostly do). ``marker`` adds one
cyan disc at the front (+x in the object frame) of every identity: a part all identities share, as
every car has headlights, so that which angle of one identity matches which angle of another can
be seen in the images (without it, that correspondence is the renderer's convention).
``palettes`` = N > 0 replaces the three fixed colourings by N seeded random two-colour palettes
per pattern kind: 3·N patterns per shape, so many identities (Cars3D has 183 car models) that a
code cannot remember each one's poses; the palettes are the same on every machine.

Rendering is vectorised torch on a pixel grid: signed distance functions in the object frame,
anti-aliased over one pixel, over a fixed dark background. ``render(class_id, pose)`` is exact and
deterministic, so content transfer (class of A, pose of B) can be scored against the true image.

Images are (3, resolution, resolution) float32 in [0, 1]; labels (the class id) are returned
with every batch but never used by unsupervised training (train.conditional = false).

The data is infinite: every batch draws fresh classes and poses from a seeded generator (the
stream's state is that generator's state, so a resumed run continues exactly); ``test_batch`` uses
a different seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Batch, BatchStream, DataSource, Models
from genvae.errors import ConfigError

SHAPES = ("circle", "square", "triangle", "cross")
# (body colour, pattern colour, pattern kind)
PATTERNS = (
    ((0.90, 0.20, 0.15), (1.00, 0.85, 0.20), "half"),  # red body, yellow half
    ((0.15, 0.35, 0.95), (0.95, 0.95, 0.95), "stripes"),  # blue body, white stripes
    ((0.20, 0.75, 0.25), (0.85, 0.20, 0.85), "dot"),  # green body, magenta off-centre dot
)
BACKGROUND = (0.12, 0.12, 0.14)
MARKER_COLOUR = (0.20, 0.95, 0.95)  # cyan: in none of the patterns
RADIUS = 0.55  # object size in image coordinates [-1, 1]
NUM_CLASSES = len(SHAPES) * len(PATTERNS)
PALETTE_SEED = 2021  # the random palettes of ``palettes=N``: fixed, so a dataset is the same everywhere


def class_parts(class_id: Tensor, num_patterns: int = len(PATTERNS)) -> tuple[Tensor, Tensor]:
    """(shape index, pattern index) of each class id: class = shape * num_patterns + pattern."""
    return class_id // num_patterns, class_id % num_patterns


def with_shape_of(class_id: Tensor, shape_from: Tensor, num_patterns: int = len(PATTERNS)) -> Tensor:
    """Class ids with the colour pattern of ``class_id`` and the shape of ``shape_from``."""
    return class_parts(shape_from, num_patterns)[0] * num_patterns + class_parts(class_id, num_patterns)[1]


def _hsv(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """RGB (n, 3) of hue / saturation / value in [0, 1]."""
    k = torch.remainder(torch.tensor([5.0, 3.0, 1.0]) + h[:, None] * 6, 6)
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def random_patterns(palettes: int) -> tuple[tuple[tuple[float, ...], tuple[float, ...], str], ...]:
    """``palettes`` seeded two-colour palettes for each pattern kind of ``PATTERNS``, in the same
    form as ``PATTERNS`` (kind-major: the first ``palettes`` entries are halves). Body and pattern
    hues lie a quarter to three quarters of the colour circle apart, and away from the marker's cyan."""
    g = torch.Generator().manual_seed(PALETTE_SEED)
    n = palettes * len(PATTERNS)
    u = torch.rand(n, 6, generator=g)
    cyan, gap = 0.5, 0.06

    def off_cyan(h: Tensor) -> Tensor:
        near = (h - cyan).abs() < gap
        return torch.where(near, h + torch.sign(h - cyan + 1e-9) * gap, h)

    body_h = off_cyan(u[:, 0])
    second_h = off_cyan(torch.remainder(body_h + 0.25 + 0.5 * u[:, 1], 1.0))
    body = _hsv(body_h, 0.55 + 0.4 * u[:, 2], 0.7 + 0.25 * u[:, 3])
    second = _hsv(second_h, 0.3 + 0.6 * u[:, 4], 0.75 + 0.25 * u[:, 5])
    kinds = [kind for _, _, kind in PATTERNS]
    return tuple(
        (tuple(body[i].tolist()), tuple(second[i].tolist()), kinds[i // palettes]) for i in range(n)
    )


def _box(px: Tensor, py: Tensor, hx: float, hy: float) -> Tensor:
    dx, dy = px.abs() - hx, py.abs() - hy
    outside = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2)
    return outside + torch.maximum(dx, dy).clamp(max=0)


def _triangle(px: Tensor, py: Tensor, r: float) -> Tensor:
    """Equilateral triangle with circumradius ``r``, one vertex along −y (up) in the object frame."""
    # distance to the three edge half-planes (apothem r/2), normals at 90°, 210°, 330°
    d = None
    for angle in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
        e = px * math.cos(angle) + py * math.sin(angle) - r / 2
        d = e if d is None else torch.maximum(d, e)
    return d  # type: ignore[return-value]


def shape_sdf(shape: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Signed distance (negative inside) of each sample's shape; px, py: (B, H, W) object frame."""
    r = RADIUS
    sdfs = torch.stack(
        [
            torch.sqrt(px**2 + py**2) - 0.85 * r,
            _box(px, py, 0.72 * r, 0.72 * r),
            _triangle(px, py, 1.1 * r),
            torch.minimum(_box(px, py, r, 0.36 * r), _box(px, py, 0.36 * r, r)),
        ]
    )  # (4, B, H, W)
    return sdfs.gather(0, shape.view(1, -1, 1, 1).expand(1, *px.shape)).squeeze(0)


def pattern_sdf(pattern: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Signed distance of each sample's second-colour region in the object frame; ``pattern``: the
    kind's index in ``PATTERNS`` (half, stripes, dot)."""
    r = RADIUS
    sdfs = torch.stack(
        [
            -px,  # half: the right half (+x) of the object
            (torch.remainder(py / (0.5 * r) + 0.25, 1.0) - 0.5).abs() * (0.5 * r) - 0.125 * r,  # stripes along x
            torch.sqrt((px - 0.45 * r) ** 2 + (py + 0.1 * r) ** 2) - 0.3 * r,  # dot right of the centre
        ]
    )
    return sdfs.gather(0, pattern.view(1, -1, 1, 1).expand(1, *px.shape)).squeeze(0)


def marker_sdf(px: Tensor, py: Tensor) -> Tensor:
    """Signed distance of the shared front marker: a disc on the +x side, inside every shape."""
    r = RADIUS
    return torch.sqrt((px - 0.45 * r) ** 2 + py**2) - 0.2 * r


def render(
    class_id: Tensor | int, pose: Tensor, resolution: int = 64, marker: bool = False, patterns: tuple = PATTERNS  # type: ignore[type-arg]
) -> Tensor:
    """Images (B, 3, R, R) in [0, 1] of classes ``class_id`` (B,) in poses ``pose`` (B, 3) =
    (angle, x, y), with the shared front marker when ``marker``; ``patterns`` is the colouring
    table the ids index (``PATTERNS`` or :func:`random_patterns`). A single class id / pose (3,)
    gives one image (3, R, R)."""
    single = pose.dim() == 1
    pose = pose.reshape(-1, 3).float()
    class_id = torch.as_tensor(class_id, dtype=torch.long).reshape(-1).expand(len(pose))
    num_classes = len(SHAPES) * len(patterns)
    if bool(((class_id < 0) | (class_id >= num_classes)).any()):
        raise ValueError(f"class ids must lie in [0, {num_classes}), got {class_id.tolist()}")
    shape, pattern = class_parts(class_id, len(patterns))
    # pixel centres in [-1, 1]
    coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    angle, cx, cy = pose[:, 0, None, None], pose[:, 1, None, None], pose[:, 2, None, None]
    dx, dy = gx - cx, gy - cy  # (B, R, R)
    cos, sin = torch.cos(angle), torch.sin(angle)
    px, py = cos * dx + sin * dy, -sin * dx + cos * dy  # rotate the image by −θ: object frame
    pixel = 2.0 / resolution
    alpha = (0.5 - shape_sdf(shape, px, py) / pixel).clamp(0, 1)  # one-pixel anti-aliasing
    kind = torch.tensor([[k for _, _, k in PATTERNS].index(p[2]) for p in patterns])[pattern]
    beta = (0.5 - pattern_sdf(kind, px, py) / pixel).clamp(0, 1)
    body = torch.tensor([p[0] for p in patterns])[pattern]  # (B, 3)
    second = torch.tensor([p[1] for p in patterns])[pattern]
    colour = body[:, :, None, None] * (1 - beta[:, None]) + second[:, :, None, None] * beta[:, None]
    if marker:
        gamma = (0.5 - marker_sdf(px, py) / pixel).clamp(0, 1)[:, None]
        colour = colour * (1 - gamma) + torch.tensor(MARKER_COLOUR)[None, :, None, None] * gamma
    background = torch.tensor(BACKGROUND)[None, :, None, None]
    images = background * (1 - alpha[:, None]) + colour * alpha[:, None]
    return images[0] if single else images


def random_poses(n: int, generator: torch.Generator, max_shift: float) -> Tensor:
    """(n, 3) poses: angle uniform in [0, 2π), x, y uniform in [−max_shift, max_shift]."""
    u = torch.rand(n, 3, generator=generator)
    return torch.stack([u[:, 0] * 2 * math.pi, (u[:, 1] * 2 - 1) * max_shift, (u[:, 2] * 2 - 1) * max_shift], dim=1)


class ShapesStream(BatchStream):
    def __init__(self, source: "Shapes3DSynthetic", batch_size: int, seed: int) -> None:
        self.source, self.batch_size = source, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.source.draw(self.batch_size, self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class Shapes3DSynthetic(DataSource):
    """Rendered objects: 12 identities (class; 12·N with ``palettes=N``) x continuous poses
    (content). See the module doc."""

    kind = "images"
    num_classes = NUM_CLASSES
    name = "shapes3d-synthetic"

    def __init__(
        self,
        resolution: int = 64,
        max_shift: float = 0.25,
        shapes: list[str] = list(SHAPES),  # noqa: B006 (read only)
        marker: bool = False,
        palettes: int = 0,
    ) -> None:
        if resolution < 16 or resolution % 16:
            raise ConfigError(f"data.resolution must be a multiple of 16 (at least 16), got {resolution}")
        if not 0.0 <= max_shift <= 0.5:
            raise ConfigError(f"data.max_shift must lie in [0, 0.5] (objects stay inside the image), got {max_shift}")
        unknown = [s for s in shapes if s not in SHAPES]
        if unknown or not shapes or len(set(shapes)) != len(shapes):
            raise ConfigError(f"data.shapes must be distinct names from {list(SHAPES)}, got {list(shapes)}")
        if not isinstance(marker, bool):
            raise ConfigError(f"data.marker must be true or false, got {marker!r}")
        if isinstance(palettes, bool) or not isinstance(palettes, int) or not 0 <= palettes <= 1000:
            raise ConfigError(f"data.palettes must be a whole number in [0, 1000] (0: the three fixed colourings), got {palettes!r}")
        self.resolution, self.max_shift, self.marker = int(resolution), float(max_shift), marker
        self.patterns = random_patterns(palettes) if palettes else PATTERNS
        self.num_classes = len(SHAPES) * len(self.patterns)
        # The classes drawn: every pattern on each chosen shape. Ids stay global (shape x pattern),
        # so with all four shapes the draws are the same as before this option existed.
        self.class_ids = torch.tensor(
            [SHAPES.index(s) * len(self.patterns) + p for s in sorted(shapes, key=SHAPES.index) for p in range(len(self.patterns))]
        )
        self.shape = (3, self.resolution, self.resolution)
        # The paper's Cars3D settings (Appendix 9.3): β_kl = 1 for both groups, β_rec = 0.5,
        # β_neg = 2048 (content) and 1024 (class); LORD's 256 / 128 codes at 64x64. MSE replaces
        # the VGG perceptual loss (no pretrained weights here).
        big = self.resolution >= 64
        self.recommended = {
            "train": {"batch_size": 32 if big else 16, "steps": 20_000 if big else 600, "lr": 2e-4, "milestones": [],
                      "log_every": 50, "checkpoint_every": 2000 if big else 300, "figures_every": 0},
            "arch": {"name": "lord", **({"class_dim": 256, "content_dim": 128, "channels": [64, 128, 256, 256], "fc_dim": 256, "adain_dim": 256}
                                        if big
                                        else {"class_dim": 64, "content_dim": 32, "channels": [32, 64, 128, 128], "fc_dim": 128, "adain_dim": 64})},
            "vae": {"beta_rec": 0.5, "beta_kl": 1.0},
            "soft-intro": {"beta_rec": 0.5, "beta_kl": 1.0, "beta_neg": {"class": 1024.0, "content": 2048.0}},
        }  # fmt: skip

    def _draw_classes(self, n: int, generator: torch.Generator) -> Tensor:
        return self.class_ids[torch.randint(0, len(self.class_ids), (n,), generator=generator)]

    def other_class(self, class_id: Tensor) -> Tensor:
        """The next drawn class after each of ``class_id`` (cyclically): a different identity."""
        index = (self.class_ids[None, :] == class_id[:, None]).long().argmax(1)
        return self.class_ids[(index + 1) % len(self.class_ids)]

    def draw(self, n: int, generator: torch.Generator) -> Batch:
        y = self._draw_classes(n, generator)
        poses = random_poses(n, generator, self.max_shift)
        return Batch(self.render(y, poses), y)

    def draw_with_poses(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        """(images, class ids, poses) of ``n`` seeded samples."""
        g = torch.Generator().manual_seed(seed)
        y = self._draw_classes(n, g)
        poses = random_poses(n, g, self.max_shift)
        return self.render(y, poses), y, poses

    def render(self, class_id: Tensor | int, pose: Tensor) -> Tensor:
        """The true image(s) of ``class_id`` in ``pose`` (angle, x, y) at this resolution."""
        return render(class_id, pose, self.resolution, self.marker, self.patterns)

    @staticmethod
    def rotate_poses(poses: Tensor, angle: float) -> Tensor:
        """``poses`` turned by ``angle`` radians (positions unchanged)."""
        return poses + torch.tensor([angle, 0.0, 0.0])

    def with_shape_of(self, class_id: Tensor, shape_from: Tensor) -> Tensor:
        """Class ids with the colouring of ``class_id`` and the shape of ``shape_from`` (lets
        content_transfer_error see which class is the shape's)."""
        return with_shape_of(class_id, shape_from, len(self.patterns))

    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> ShapesStream:
        return ShapesStream(self, batch_size, seed=seed * 1000 + rank)

    def test_batch(self, n: int, seed: int = 0) -> Batch:
        x, y, _ = self.draw_with_poses(n, seed + 10_007)
        return Batch(x, y)

    def plot_samples(self, x: Tensor, path: Path) -> None:
        from genvae.viz.images import make_grid, save_grid

        save_grid(make_grid(x.reshape(-1, *self.shape), nrow=8), Path(path))

    def write_figures(self, models: Models, out_dir: Path, seed: int = 0) -> list[Path]:
        """``samples.png``, ``reconstructions.png`` and ``translation.png`` (class from the left
        column, content from the top row)."""
        from genvae.translate import translation_grid
        from genvae.viz.images import RECONSTRUCTIONS_CAPTION, TRANSLATION_CAPTION, reconstruction_grid, sample_grid, samples_caption, save_grid

        out_dir = Path(out_dir)
        with torch.no_grad():
            paths = [save_grid(sample_grid(models, n=32, seed=seed), out_dir / "samples.png", samples_caption(models))]
            test = self.test_batch(16, seed=seed)
            paths.append(save_grid(reconstruction_grid(models, test.x), out_dir / "reconstructions.png", RECONSTRUCTIONS_CAPTION))
            if set(models.latent_groups) >= {"class", "content"}:
                paths.append(save_grid(translation_grid(models, test.x[:6], test.x[6:12]), out_dir / "translation.png", TRANSLATION_CAPTION))
        return paths


@hookimpl
def genvae_register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register("shapes3d-synthetic", Shapes3DSynthetic)
