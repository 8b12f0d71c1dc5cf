"""Point-cloud pictures: rows of 3-D scatter plots (matplotlib's mplot3d)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402


def scatter_clouds(rows: Sequence[tuple[str, Tensor]], path: Path, titles: Sequence[Sequence[str]] | None = None,
                   title: str = "", point_size: float = 4.0) -> Path:  # fmt: skip
    """One row of 3-D scatters per (label, clouds (K, N, 3)); all axes on [-1, 1]^3."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = max(len(c) for _, c in rows)
    fig = plt.figure(figsize=(2.3 * cols, 2.4 * len(rows)))
    for r, (label, clouds) in enumerate(rows):
        clouds = clouds.detach().float().cpu()
        for c in range(len(clouds)):
            ax: Any = fig.add_subplot(len(rows), cols, r * cols + c + 1, projection="3d")
            p = clouds[c].numpy()
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=point_size, c=p[:, 2], cmap="viridis", vmin=-1, vmax=1, linewidths=0, depthshade=False)
            for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
                setter(-1, 1)
            ax.set_box_aspect((1, 1, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_zticks([])
            ax.view_init(elev=25, azim=35)
            sub = titles[r][c] if titles else ""
            ax.set_title(f"{label}\n{sub}" if c == 0 else sub, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_pointcloud_figure(models: Any, source: Any, path: Path, seed: int = 0, k: int = 6) -> Path:
    """Held-out inputs, reconstructions D(μ(x)) (with their Chamfer distances) and samples D(z), z ~ N(0, I)."""
    from genvae_pointcloud.chamfer import chamfer_distance
    from genvae_pointcloud.data import SHAPE_CLASSES

    batch = source.test_batch(k, seed)
    conditional = int(getattr(models.decoder, "num_classes", 0)) > 0
    y = batch.y if conditional else None
    device = next(models.decoder.parameters()).device
    x = batch.x.to(device)
    y = None if y is None else y.to(device)
    with torch.no_grad():
        mu, _ = models.encode(x, y)
        rec = models.decode(mu, y)
        z = torch.randn(k, mu.shape[1], generator=torch.Generator().manual_seed(seed + 1)).to(device)
        fake = models.decode(z, y)
        cd = chamfer_distance(x, rec)
    names = list(SHAPE_CLASSES) if source.name == "pointcloud-shapes" else list(getattr(source, "class_names", []))
    inputs = [names[int(c)] if batch.y is not None and names else "" for c in (batch.y if batch.y is not None else [0] * k)]
    titles = [inputs, [f"CD {v:.2f}" for v in cd.tolist()], [""] * k]
    return scatter_clouds([("input", x), ("reconstruction", rec), ("sample", fake)], path, titles, title=source.name)
