"""Point-cloud datasets: ``pointcloud`` (your files) and ``pointcloud-shapes`` (generated).

Every cloud has exactly ``num_points`` points (sub-sampled without replacement, or padded by
repeating randomly chosen points of the cloud), is centred on its mean and scaled so that its
farthest point lies on the unit sphere (``normalize = true``). Samples are (num_points, 3)
float32; batches (B, num_points, 3).

``pointcloud``: every ``.npy`` (an N×3 array) and ASCII ``.ply`` (the x, y, z of its vertices)
under ``data.path``, searched recursively. When every file lies in a sub-folder and there are at
least two sub-folders, the first-level sub-folder is the class (``airplane/1.npy``,
``chair/7.ply``, ... as ShapeNet's categories). Files are read on first use and kept in memory;
the sub-sampling is fixed per file (seeded by ``data.seed``).

``pointcloud-shapes``: ``size`` clouds generated from ``seed`` — spheres (class 0), cubes
(class 1) and tori (class 2, lying in the x-y plane), each stretched by a random factor in
[0.6, 1] per axis (and, with ``rotate = true``, randomly rotated: a much harder set for a small
model), points sampled on the surface (uniform by area for spheres and cubes, uniform in the
two angles for tori). A held-out set of the same kind (another seed) is the ``test_batch``.

The training stream shuffles every epoch with a generator seeded by ``seed + epoch`` and gives
each process a disjoint slice of the permutation; its state is (epoch, position), so a resumed
run continues exactly, as the built-in image datasets.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from genvae.core.interfaces import Batch, BatchStream, DataSource, Models
from genvae.errors import ConfigError, DataError

SUFFIXES = (".npy", ".ply")
SHAPE_CLASSES = ("sphere", "cube", "torus")


# --------------------------------------------------------------------------------------------
# Points
# --------------------------------------------------------------------------------------------


def normalize_cloud(points: Tensor) -> Tensor:
    """Centred on the mean, farthest point on the unit sphere; works on (N, 3) or (B, N, 3)."""
    centred = points - points.mean(dim=-2, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=-1, keepdim=True).clamp(min=1e-12)
    return centred / radius.unsqueeze(-1)


def fit_points(points: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Exactly ``n`` points: a random subset without replacement, or all points and random repeats."""
    count = len(points)
    if count >= n:
        return points[torch.randperm(count, generator=generator)[:n]]
    extra = torch.randint(0, count, (n - count,), generator=generator)
    return torch.cat([points, points[extra]])


def read_ply(path: Path) -> np.ndarray:
    """x, y, z of the vertices of an ASCII PLY file, (N, 3) float32."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise DataError(f"pointcloud: {path} is not a PLY file (no 'ply' magic line); save the cloud as an N×3 .npy instead")
        header: list[str] = []
        for raw in f:
            line = raw.decode("ascii", errors="replace").strip()
            if line == "end_header":
                break
            header.append(line)
        else:
            raise DataError(f"pointcloud: {path} has no 'end_header' line; re-export it as ASCII PLY or save an N×3 .npy")
        body = f.read().decode("ascii", errors="replace")
    fmt = next((l.split()[1] for l in header if l.startswith("format")), "")
    if fmt != "ascii":
        raise DataError(
            f"pointcloud: {path} is a {fmt or 'unknown'}-format PLY; only ASCII PLY is read: re-export it as ASCII "
            f"(e.g. open3d.io.write_point_cloud(path, cloud, write_ascii=True)) or save an N×3 .npy"
        )
    count, props, element = 0, [], ""
    for line in header:
        parts = line.split()
        if parts[0] == "element":
            element = parts[1]
            if element == "vertex":
                count = int(parts[2])
            elif count == 0:  # an element before the vertices: its lines come first
                raise DataError(f"pointcloud: {path} lists element {element!r} before its vertices; put the vertex element first")
        elif parts[0] == "property" and element == "vertex":
            props.append(parts[-1])
    missing = [a for a in ("x", "y", "z") if a not in props]
    if count == 0 or missing:
        raise DataError(f"pointcloud: {path} has no vertices with x, y, z properties (vertex properties: {props}); it must hold a point cloud")
    rows = [l.split() for l in body.splitlines()[:count]]
    try:
        values = np.asarray(rows, dtype=np.float32)
    except ValueError:
        raise DataError(f"pointcloud: {path} has unreadable vertex lines (expected {len(props)} numbers each); re-export it") from None
    if values.shape != (count, len(props)):
        raise DataError(f"pointcloud: {path} declares {count} vertices with {len(props)} properties but holds {values.shape}; re-export it")
    return values[:, [props.index(a) for a in ("x", "y", "z")]]


def read_cloud(path: Path) -> Tensor:
    """One file's points, (N, 3) float32, checked."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"pointcloud: cannot read {path} ({type(exc).__name__}: {exc}); save each cloud with numpy.save as an N×3 array") from None
    else:
        array = read_ply(path)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise DataError(f"pointcloud: {path} holds an array of shape {tuple(array.shape)}, expected (N, 3) points; save one cloud per file as an N×3 array")
    points = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not torch.isfinite(points).all():
        raise DataError(f"pointcloud: {path} holds NaN or infinite coordinates; clean the file")
    return points


def random_rotations(n: int, generator: torch.Generator) -> Tensor:
    """(n, 3, 3) rotation matrices (QR of Gaussian matrices, signs fixed: uniform on SO(3))."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q


def sample_shapes(labels: Tensor, num_points: int, generator: torch.Generator, rotate: bool = False) -> Tensor:
    """(len(labels), num_points, 3) points on spheres (0), cubes (1) and tori (2), stretched
    (and randomly rotated with ``rotate``)."""
    n = len(labels)
    # sphere: normalised Gaussians
    sphere = torch.randn(n, num_points, 3, generator=generator)
    sphere = sphere / sphere.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    # cube [-1, 1]^3: a face (axis, sign) per point, uniform on the face
    cube = torch.rand(n, num_points, 3, generator=generator) * 2 - 1
    axis = torch.randint(0, 3, (n, num_points, 1), generator=generator)
    sign = torch.randint(0, 2, (n, num_points, 1), generator=generator).float() * 2 - 1
    cube = cube.scatter(2, axis, sign)
    # torus: major radius 1, minor radius in [0.25, 0.45] per cloud
    u = torch.rand(n, num_points, generator=generator) * 2 * math.pi
    v = torch.rand(n, num_points, generator=generator) * 2 * math.pi
    minor = 0.25 + 0.2 * torch.rand(n, 1, generator=generator)
    ring = 1.0 + minor * torch.cos(v)
    torus = torch.stack([ring * torch.cos(u), ring * torch.sin(u), minor * torch.sin(v)], dim=-1)
    points = torch.stack([sphere, cube, torus])[labels, torch.arange(n)]  # (n, num_points, 3)
    points = points * (0.6 + 0.4 * torch.rand(n, 1, 3, generator=generator))
    if rotate:
        points = points @ random_rotations(n, generator).transpose(1, 2)
    return normalize_cloud(points)


# --------------------------------------------------------------------------------------------
# The stream and the data sources
# --------------------------------------------------------------------------------------------


class CloudStream(BatchStream):
    """Endless shuffled batches of one process's shard of a fixed set; resumable at (epoch, position)."""

    def __init__(self, source: "PointCloudData", batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.source, self.batch_size, self.seed, self.rank, self.world_size = source, batch_size, seed, rank, world_size
        self.size = source.size
        self.shard_size = self.size // world_size
        if self.shard_size == 0:
            raise DataError(f"{source.name}: {self.size} clouds cannot be split over {world_size} processes; add clouds")
        self.epoch, self.position = 0, 0
        self._order: tuple[int, Tensor] | None = None

    def _epoch_order(self, epoch: int) -> Tensor:
        if self._order is None or self._order[0] != epoch:
            perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            self._order = (epoch, perm[self.rank : self.shard_size * self.world_size : self.world_size])
        return self._order[1]

    def next_batch(self) -> Batch:
        parts, need = [], self.batch_size
        while need:
            take = min(need, self.shard_size - self.position)
            parts.append(self._epoch_order(self.epoch)[self.position : self.position + take])
            self.position += take
            need -= take
            if self.position == self.shard_size:
                self.epoch, self.position = self.epoch + 1, 0
        return self.source.get(torch.cat(parts))

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if self.position >= self.shard_size:
            raise DataError(f"cannot resume {self.source.name} at position {self.position}: an epoch has {self.shard_size} clouds per process")


class PointCloudData(DataSource):
    """A fixed set of clouds (``clouds`` (S, N, 3), ``labels`` (S,) or None) with figures."""

    kind = "pointclouds"
    name = "pointcloud"

    def __init__(self, num_points: int) -> None:
        if num_points < 1:
            raise ConfigError(f"data.num_points must be positive, got {num_points}")
        self.num_points = int(num_points)
        self.shape = (self.num_points, 3)

    # subclasses provide these
    size: int

    def load(self) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def get(self, index: Tensor) -> Batch:
        clouds, labels = self.load()
        return Batch(clouds[index].clone(), None if labels is None else labels[index].clone())

    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> CloudStream:
        return CloudStream(self, batch_size, seed * 1000, rank, world_size)

    def write_figures(self, models: Models, out_dir: Path, seed: int = 0) -> list[Path]:
        """``pointclouds.png``: held-out inputs, their reconstructions D(μ(x)) and samples D(z)."""
        from genvae_pointcloud.figures import write_pointcloud_figure

        return [write_pointcloud_figure(models, self, Path(out_dir) / "pointclouds.png", seed)]

    def plot_samples(self, x: Tensor, path: Path) -> None:
        from genvae_pointcloud.figures import scatter_clouds

        scatter_clouds([("generated", x[:8])], Path(path))


class PointCloudShapes(PointCloudData):
    """Spheres, cubes and tori as point clouds: a small seeded set with labels (see the module doc)."""

    name = "pointcloud-shapes"
    num_classes = len(SHAPE_CLASSES)

    def __init__(self, size: int = 600, num_points: int = 128, seed: int = 0, rotate: bool = False) -> None:
        super().__init__(num_points)
        if size < 1:
            raise ConfigError(f"data.size must be positive, got {size}")
        self.size, self.seed, self.rotate = int(size), int(seed), bool(rotate)
        self._data: tuple[Tensor, Tensor] | None = None
        self.recommended = {
            "train": {"batch_size": 32, "steps": 3000, "lr": 5e-4, "milestones": [], "log_every": 50,
                      "checkpoint_every": 1000, "figures_every": 0},
            "arch": {"name": "pointnet", "z_dim": 16, "channels": [32, 64, 128], "fc": [128], "decoder_hidden": [128, 256]},
            "vae": {"recon_loss": "chamfer", "beta_rec": 20.0, "beta_kl": 1.0},
            "intro": {"recon_loss": "chamfer", "beta_rec": 20.0},
            "soft-intro": {"recon_loss": "chamfer", "beta_rec": 20.0, "beta_kl": 1.0, "beta_neg": 64.0, "num_vae": 400},
        }  # fmt: skip
        # β_rec = 20: with the summed Chamfer distance (a Gaussian of variance ½ per point, as mse)
        # and β_rec = 1 the encoder is never used (the decoder learns the mean shape, KL → 0);
        # with 20 the posterior opens after ~300 steps. β_neg = 64 with s = 1/(3·128): chosen here,
        # not the authors' values (their 3-D code trains on ShapeNet with 2,048 points).

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, len(SHAPE_CLASSES), (n,), generator=g)
        return sample_shapes(labels, self.num_points, g, self.rotate), labels

    def load(self) -> tuple[Tensor, Tensor]:
        if self._data is None:
            self._data = self.generate(self.size, self.seed)
        return self._data

    def test_batch(self, n: int, seed: int = 0) -> Batch:
        clouds, labels = self.generate(n, self.seed + 10_007 + seed)
        return Batch(clouds, labels)


class PointCloudFolder(PointCloudData):
    """Your point clouds: ``.npy`` (N×3) and ASCII ``.ply`` files under ``data.path`` (see the module doc)."""

    name = "pointcloud"

    def __init__(self, path: str = "", num_points: int = 2048, normalize: bool = True, seed: int = 0) -> None:
        super().__init__(num_points)
        if not path:
            raise ConfigError("the pointcloud dataset needs data.path, a folder of .npy (N×3) or ASCII .ply files; set it with --set data.path=DIR")
        self.path, self.normalize, self.seed = Path(path).expanduser(), bool(normalize), int(seed)
        if not self.path.is_dir():
            raise DataError(f"pointcloud: {self.path} is not a directory; set data.path to a folder of .npy (N×3) or ASCII .ply files")
        self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.files:
            raise DataError(f"pointcloud: no .npy or .ply files under {self.path}; put one N×3 cloud per file there")
        self.size = len(self.files)
        folders = [p.relative_to(self.path).parts[0] if len(p.relative_to(self.path).parts) > 1 else None for p in self.files]
        self.class_names = sorted(set(folders)) if None not in folders and len(set(folders)) > 1 else []  # type: ignore[type-var]
        self.num_classes = len(self.class_names)
        self._labels = torch.tensor([self.class_names.index(f) for f in folders]) if self.class_names else None
        self._clouds: Tensor | None = None
        self.recommended = {
            "train": {"batch_size": 32, "lr": 5e-4, "milestones": [], "log_every": 50},
            "arch": {"name": "pointnet"},
            "vae": {"recon_loss": "chamfer"},
            "intro": {"recon_loss": "chamfer"},
            "soft-intro": {"recon_loss": "chamfer", "beta_rec": 1.0, "beta_kl": 1.0, "beta_neg": 256.0},
        }

    def load(self) -> tuple[Tensor, Tensor | None]:
        if self._clouds is None:
            g = torch.Generator().manual_seed(self.seed)
            clouds = torch.stack([fit_points(read_cloud(p), self.num_points, g) for p in self.files])
            self._clouds = normalize_cloud(clouds) if self.normalize else clouds
        return self._clouds, self._labels
