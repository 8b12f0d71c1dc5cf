"""genvae plugin: 3-D Soft-IntroVAE for point clouds, in outline (the authors' ``soft_intro_vae_3d``).

Registers
- datasets ``pointcloud`` (a folder of ``.npy`` N×3 arrays and ASCII ``.ply`` files) and
  ``pointcloud-shapes`` (seeded spheres, cubes and tori sampled as point clouds, with labels);
- architecture ``pointnet`` (PointNet-style encoder, fully-connected decoder to N×3 points);
- reconstruction loss ``chamfer`` (symmetric squared Chamfer distance, summed per sample).
"""

from __future__ import annotations

import genvae
from genvae_pointcloud.chamfer import chamfer_distance
from genvae_pointcloud.data import PointCloudFolder, PointCloudShapes
from genvae_pointcloud.model import PointNetDecoder, PointNetEncoder

__all__ = ["chamfer_distance", "PointCloudFolder", "PointCloudShapes", "PointNetEncoder", "PointNetDecoder"]


@genvae.hookimpl
def genvae_register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register("pointcloud", PointCloudFolder)
    register("pointcloud-shapes", PointCloudShapes)


@genvae.hookimpl
def genvae_register_architectures(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "pointnet",
        genvae.Architecture(PointNetEncoder, PointNetDecoder, "PointNet-style encoder (shared per-point MLP, max-pool) and MLP decoder to N×3 points"),
    )


@genvae.hookimpl
def genvae_register_losses(register) -> None:  # type: ignore[no-untyped-def]
    register("chamfer", chamfer_distance)
