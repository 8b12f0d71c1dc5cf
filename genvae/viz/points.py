"""Figures for 2-D data (paper Figure 2): real vs generated samples, and exp(ELBO) densities."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

DENSITY_CMAP = "turbo"  # a perceptually smoother jet (the authors plot with jet)


def _np(points: Any) -> np.ndarray:
    if isinstance(points, Tensor):
        return points.detach().cpu().float().numpy()
    return np.asarray(points)


def _square_ax(ax: Any, scale: float) -> None:
    lim = 2.0 * scale
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_scatter(ax: Any, points: Any, scale: float, color: str, title: str = "", size: float = 2.0) -> None:
    p = _np(points)
    ax.scatter(p[:, 0], p[:, 1], s=size, c=color, alpha=0.6, linewidths=0)
    _square_ax(ax, scale)
    if title:
        ax.set_title(title, fontsize=10)


def draw_density(ax: Any, values: Any, scale: float, title: str = "", cmap: str = DENSITY_CMAP) -> Any:
    """``values[i, j]`` is the density at (x_i, y_j) (the authors' meshgrid 'ij' layout)."""
    v = _np(values)
    lim = 2.0 * scale
    im = ax.imshow(v.T, origin="lower", extent=(-lim, lim, -lim, lim), cmap=cmap, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return im


def scatter_real_fake(real: Any, fake: Any, scale: float, path: str | Path, title: str = "") -> Path:
    """Side-by-side scatter of real and generated samples on [-2·scale, 2·scale]² (Figure 2a)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    draw_scatter(axes[0], real, scale, "tab:blue", f"real ({len(real)})")
    draw_scatter(axes[1], fake, scale, "tab:green", f"generated ({len(fake)})")
    return _save(fig, path, title)


def histogram_real_fake(real: Any, fake: Any, scale: float, path: str | Path, title: str = "") -> Path:
    """Histograms of one-dimensional real and generated samples over [-2·scale, 2·scale]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(-2.0 * scale, 2.0 * scale, 81)
    ax.hist(_np(real).ravel(), bins=bins, density=True, alpha=0.5, color="tab:blue", label=f"real ({len(real)})")
    ax.hist(_np(fake).ravel(), bins=bins, density=True, alpha=0.5, color="tab:green", label=f"generated ({len(fake)})")
    ax.set_yticks([])
    ax.legend(fontsize=9)
    return _save(fig, path, title)


def scatter_generated(points: Any, path: str | Path, title: str = "") -> Path:
    """Scatter of generated samples' first two coordinates, on a square that holds them all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = _np(points).reshape(len(points), -1)[:, :2]
    scale = max(float(np.abs(p).max()) / 2.0 * 1.05, 1e-6) if len(p) else 1.0
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    draw_scatter(ax, p, scale, "tab:green", f"generated ({len(p)})")
    return _save(fig, path, title)


def _save(fig: Any, path: Path, title: str) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grid_values(energy_fn: Callable[[Tensor], Tensor], scale: float, n_pts: int = 256) -> Tensor:
    """exp(−energy) on an n_pts × n_pts grid (values[i, j] at (x_i, y_j))."""
    from genvae.plugins.metrics.toy2d import setup_grid

    grid = setup_grid(scale, n_pts)
    with torch.no_grad():
        return torch.exp(-energy_fn(grid)).reshape(n_pts, n_pts)


def density_image(energy_or_values: Callable[[Tensor], Tensor] | Any, scale: float, path: str | Path, title: str = "", n_pts: int = 256, cmap: str = DENSITY_CMAP) -> Path:
    """Density image (Figure 2b). Pass either an energy function x -> e(x) (plotted as exp(−e)
    on an n_pts² grid) or a square array of density values laid out [i, j] = (x_i, y_j)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = grid_values(energy_or_values, scale, n_pts) if callable(energy_or_values) else energy_or_values
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    im = draw_density(ax, values, scale, "density exp(ELBO)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path, title)


def write_toy2d_figures(models: Any, data_source: Any, out_dir: str | Path, seed: int = 0, n_samples: int = 5000, n_pts: int = 256) -> list[Path]:
    """``samples.png`` (5,000 real vs 5,000 generated) and ``density.png`` (exp(−energy) on a
    256² grid) for a 2-D data source; ``models`` is a :class:`genvae.Models` (eval mode)."""
    from genvae.plugins.metrics.toy2d import elbo_energy, generated_samples, real_samples

    out = Path(out_dir)
    scale = float(getattr(data_source, "plot_scale", 2.0))
    z_dim = sum(models.latent_groups.values())
    with torch.no_grad():
        real = real_samples(data_source, n_samples, seed)
        fake = generated_samples(models.decode, z_dim, n_samples, seed + 1)
    name = getattr(data_source, "title", getattr(data_source, "name", ""))
    paths = [scatter_real_fake(real, fake, scale, out / "samples.png", title=name)]
    paths.append(density_image(lambda x: elbo_energy(models.encode, models.decode, x), scale, out / "density.png", title=name, n_pts=n_pts))
    return paths
