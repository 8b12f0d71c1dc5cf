"""What a trained encoder makes of a dataset (``genvae encode``): each image's posterior mean and
log-variance, the KL of each latent dimension, and the active units.

A dimension is *active* when its posterior mean varies across the data: Cov_x(E_q[z_d|x]) > 0.01
(Burda et al. 2016, "Importance Weighted Autoencoders", Section 5.2). A collapsed posterior
(Appendix 9.5 of the paper) has no active units and a KL near 0 in every dimension.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genvae.core.interfaces import DataSource, num_classes_of
from genvae.errors import ConfigError, DataError

ACTIVE_THRESHOLD = 0.01
GROUP_COLOURS = [("tab:blue", "lightsteelblue"), ("tab:orange", "navajowhite"), ("tab:green", "palegreen"), ("tab:purple", "thistle")]


def encode_data(
    run: Any, data: str | DataSource | None = None, split: str = "test", n: int | None = None, batch_size: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Posterior parameters of ``n`` images (default: the whole split) of ``data`` (default: the
    run's dataset) under a ``LoadedRun``: ``mu``, ``logvar`` (N, z), ``labels`` (N,) when the
    data has them, and the latent groups as ``{name: size}``."""
    from genvae.plugins.metrics.ood import image_indices, iter_images, open_eval_data, require_run_shape, require_split, split_label

    require_split(split)
    if n is not None and n < 1:
        raise ConfigError(f"--num-images must be at least 1, got {n}")
    source, label = open_eval_data(data, run.data, split)
    require_run_shape(source, run)
    models = run.models
    conditional = bool(num_classes_of(run.encoder))
    mus, logvars, labels = [], [], []
    with torch.no_grad():
        for x, y in iter_images(source, split, n, batch_size, seed):
            if conditional and y is None:
                raise DataError("a class-conditional model needs labelled data to encode")
            mu, logvar = models.encode(x, y if conditional else None)
            mus.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
            if y is not None:
                labels.append(y.cpu())
    result: dict[str, Any] = {
        "mu": torch.cat(mus).numpy(),
        "logvar": torch.cat(logvars).numpy(),
        "groups": dict(models.latent_groups),
        "data": run.config.data["name"] if data is None else label,
        "split": split_label(source, split, run.data),
        "items": "images" if len(run.data.shape) == 3 else "points",
    }
    if labels:
        result["labels"] = torch.cat(labels).numpy()
    served = source.served_files(split) if hasattr(source, "served_files") else None
    if served is not None and (index := image_indices(source, split, n, seed)) is not None:
        result["files"] = np.array([str(served[i]) for i in index.tolist()])  # the image of each row
    return result


def kl_per_dimension(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean over the images of KL(q(z_d|x) ‖ N(0, 1)) = ½(μ² + σ² − log σ² − 1), per dimension."""
    return (0.5 * (mu**2 + np.exp(logvar) - logvar - 1.0)).mean(0)


def active_units(mu: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> np.ndarray:
    """Boolean mask of the dimensions whose posterior mean varies across the data by more than
    ``threshold`` (variance over images)."""
    return mu.var(0) > threshold


def group_slices(groups: dict[str, int]) -> list[tuple[str, slice]]:
    """Each latent group's columns of the concatenated code: {"class": 2, "content": 3} ->
    [("class", slice(0, 2)), ("content", slice(2, 5))]."""
    ends = np.cumsum(list(groups.values())).tolist()
    return [(name, slice(end - size, end)) for (name, size), end in zip(groups.items(), ends)]


def summary(encoded: dict[str, Any]) -> dict[str, Any]:
    """Counts, active units and total KL per image (and per latent group when there are several)."""
    mu, logvar = encoded["mu"], encoded["logvar"]
    kl, active = kl_per_dimension(mu, logvar), active_units(mu)
    out: dict[str, Any] = {"n": len(mu), "z_dim": mu.shape[1], "active_units": int(active.sum()), "kl": float(kl.sum())}
    if len(encoded["groups"]) > 1:
        for name, dims in group_slices(encoded["groups"]):
            out[f"active_units_{name}"] = int(active[dims].sum())
            out[f"kl_{name}"] = float(kl[dims].sum())
    return out


def principal_components(mu: np.ndarray, k: int = 2) -> np.ndarray:
    """The data's coordinates on the ``k`` leading principal components of the posterior means
    (the means themselves when z has ``k`` dimensions or fewer)."""
    if mu.shape[1] <= k:
        return mu
    centred = mu - mu.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T


def plot_latents(encoded: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """One panel per latent group: the posterior means on their two leading principal components,
    coloured by label. Last panel: the KL of each dimension, largest first within each group (one
    colour per group); active units dark, inactive light."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    mu, logvar = encoded["mu"], encoded["logvar"]
    kl, active = kl_per_dimension(mu, logvar), active_units(mu)
    groups, labels = encoded["groups"], encoded.get("labels")
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(5.5 * (len(groups) + 1), 4.6))
    colour = {"c": labels, "cmap": "tab10"} if labels is not None else {"color": "tab:blue"}
    for (name, dims), panel in zip(group_slices(groups), axes):
        xy = principal_components(mu[:, dims])
        if xy.shape[1] == 1:
            xy = np.concatenate([xy, np.zeros_like(xy)], 1)
        scatter = panel.scatter(xy[:, 0], xy[:, 1], s=float(np.clip(4000 / len(mu), 2, 14)), alpha=0.6, linewidths=0, **colour)
        if labels is not None and len(np.unique(labels)) <= 20:
            panel.legend(*scatter.legend_elements(), title="label", fontsize=7, loc="best", markerscale=0.8)
        axis = "z" if dims.stop - dims.start <= 2 else "principal component"
        panel.set_xlabel(f"{axis} 1")
        panel.set_ylabel(f"{axis} 2")
        what = f"{name} code: posterior means" if len(groups) > 1 else "posterior means"
        panel.set_title(f"{what} of {len(mu)} {encoded['data']} {encoded['split']} {encoded.get('items', 'images')}", fontsize=10)
    right = axes[-1]
    for (name, dims), (dark, light) in zip(group_slices(groups), itertools.cycle(GROUP_COLOURS)):
        order = dims.start + np.argsort(-kl[dims])  # largest first within the group
        label = f"{name}: {int(active[dims].sum())} of {dims.stop - dims.start} active" if len(groups) > 1 else None
        right.bar(np.arange(dims.start, dims.stop), kl[order], color=np.where(active[order], dark, light), width=0.9, label=label)
    if len(groups) > 1:
        right.legend(fontsize=8)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("latent dimension, by KL" + (" within each group" if len(groups) > 1 else ""))
    right.set_ylabel(f"KL (nats, mean over {encoded.get('items', 'images')})")
    right.set_title(f"{int(active.sum())} of {len(kl)} active units (dark); KL {kl.sum():.2f} nats", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_encoded(encoded: dict[str, Any], path: str | Path) -> Path:
    """``mu``, ``logvar``, ``labels`` and ``files`` (the image file of each row, for a folder) when
    present, and the group names / sizes as an .npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: encoded[k] for k in ("mu", "logvar", "labels", "files") if k in encoded}
    np.savez(path, **arrays, group_names=np.array(list(encoded["groups"])), group_sizes=np.array(list(encoded["groups"].values())))
    return path
