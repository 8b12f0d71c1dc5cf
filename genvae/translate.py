"""Unsupervised image translation with a two-group (class / content) model (paper Section 6.4,
Appendix 9.4.3, Figures 7, 19, 20).

Content transfer: encode two images, decode (class code of the first, content code of the
second) — the result should show the first image's object in the second image's pose. Codes are
the encoder means μ (no sampling).

- ``translation_grid``: the Figure 7 layout: class images down the left column, content images
  along the top row, an empty top-left corner, and cell (i, j) = D(class of row i, content of
  column j).
- ``write_translation_grid``: the same from a run directory and image files (``genvae translate``).
- ``content_transfer_error``: the Table 4 protocol on ``shapes3d-synthetic``, where the true
  image of (class of A, pose of B) can be rendered: per-pixel MSE of the translation against it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from genvae.core.interfaces import DataSource, Models
from genvae.errors import ConfigError
from genvae.latents import group_slices
from genvae.viz.images import load_images

CLASS_GROUP, CONTENT_GROUP = "class", "content"


def class_content_slices(models: Models) -> dict[str, slice]:
    """Where each latent group lies along dim 1; a model without 'class' and 'content' groups is
    an error."""
    out = dict(group_slices(models.latent_groups))
    if CLASS_GROUP not in out or CONTENT_GROUP not in out:
        raise ConfigError(
            f"image translation needs a model with 'class' and 'content' latent groups (e.g. arch 'lord'); "
            f"this one has {', '.join(models.latent_groups) or 'none'}"
        )
    return out


@torch.no_grad()
def encode_means(models: Models, x: Tensor) -> Tensor:
    mu, _ = models.encode(x.to(models.device))
    return mu


@torch.no_grad()
def transfer(models: Models, class_images: Tensor, content_images: Tensor) -> Tensor:
    """D(class code of class_images[i], content code of content_images[i]) for each pair i."""
    if len(class_images) != len(content_images):
        raise ValueError(f"need as many class images as content images, got {len(class_images)} and {len(content_images)}")
    slices = class_content_slices(models)
    z = encode_means(models, class_images).clone()
    z[:, slices[CONTENT_GROUP]] = encode_means(models, content_images)[:, slices[CONTENT_GROUP]]
    return models.decode(z)


@torch.no_grad()
def translation_cells(models: Models, class_images: Tensor, content_images: Tensor) -> Tensor:
    """(rows, cols, C, H, W): cell (i, j) = D(class of class_images[i], content of content_images[j])."""
    slices = class_content_slices(models)
    zc, zt = encode_means(models, class_images), encode_means(models, content_images)
    rows, cols = len(zc), len(zt)
    z = zc.repeat_interleave(cols, dim=0).clone()  # row-major: (i, j) at i * cols + j
    z[:, slices[CONTENT_GROUP]] = zt[:, slices[CONTENT_GROUP]].repeat(rows, 1)
    x = models.decode(z)
    return x.view(rows, cols, *x.shape[1:])


@torch.no_grad()
def translation_grid(models: Models, class_images: Tensor, content_images: Tensor, padding: int = 2) -> Tensor:
    """Figure 7's layout as one (C, H', W') image in [0, 1]: a (1 + rows) x (1 + cols) grid with
    the class images in the left column, the content images in the top row, a blank corner."""
    from genvae.viz.images import make_grid

    cells = translation_cells(models, class_images, content_images).cpu()
    rows, cols = cells.shape[:2]
    blank = torch.ones_like(cells[0, 0])  # white, like the padding
    top = torch.cat([blank[None], content_images.cpu().to(cells.dtype)])
    body = torch.cat([class_images.cpu().to(cells.dtype)[:, None], cells], dim=1)
    tiles = torch.cat([top[None], body]).reshape(-1, *cells.shape[2:])
    return make_grid(tiles, nrow=cols + 1, padding=padding)


def write_translation_grid(run: Any, class_paths: Sequence[str | Path], content_paths: Sequence[str | Path], out: str | Path) -> Path:
    """``genvae translate RUN --class-from A.png ... --content-from B.png ... --out grid.png``.

    ``run``: a run directory or a :class:`genvae.core.run.LoadedRun`."""
    from genvae.core.run import LoadedRun, load_run
    from genvae.viz.images import TRANSLATION_CAPTION, save_grid

    if not class_paths or not content_paths:
        raise ConfigError("translate needs at least one --class-from image and one --content-from image")
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    shape = tuple(loaded.data.shape)
    if len(shape) != 3:
        raise ConfigError(f"run {loaded.path} was trained on {loaded.config.data['name']!r}, which is not an image dataset")
    models = loaded.models
    grid = translation_grid(models, load_images(class_paths, shape), load_images(content_paths, shape))
    return save_grid(grid, Path(out), TRANSLATION_CAPTION)


@torch.no_grad()
def content_transfer_error(
    models: Models,
    data: DataSource,
    n_pairs: int = 256,
    seed: int = 0,
    batch_size: int = 128,
    distances: Mapping[str, Callable[[Tensor, Tensor], Tensor]] | None = None,
) -> dict[str, float]:
    """Content-transfer error on data that can ``render(class_id, pose)`` (``shapes3d-synthetic``).

    For ``n_pairs`` seeded pairs (A, B) with different classes: translate (class of A, content of
    B) and compare with the true rendering of A's class in B's pose. Returns per-pixel MSEs:

    - ``mse``: the translation against the truth (the score; lower is better)
    - ``mse_reconstruction``: D(E(B)) against B (how well the model reconstructs at all)
    - ``mse_copy_content``: B itself against the truth (a model that ignores the class code)
    - ``mse_copy_class``: A itself against the truth (a model that ignores the content code)
    - ``mse_mean_image``: the truth against its own mean image over all pairs (predicting one image)
    - ``mse_shape_from_content`` (datasets with ``with_shape_of``): the translation against A's
      colour pattern drawn on *B's* shape in B's pose, i.e. what a model draws that keeps the shape
      in the content code and only the colours in the class code. Below ``mse``: that is the split
      the model learned.
    - ``mse_aligned``, ``rotation_from_content``, ``rotation_from_class`` (datasets with
      ``rotate_poses``), see :func:`rotation_fit`. ``mse_aligned`` is ``mse`` after the best
      constant rotation per pair of identities, from every 15°: without ``data.marker``, which
      angle of a striped square matches which angle of a dotted one is the renderer's
      convention, which no unlabelled data reveals; a model that transfers the rotation
      consistently, whatever its convention, scores near 0 there. One angle is fitted per pair of
      identities, so use enough pairs per pair of identities (with 12 identities and 256 pairs it
      is about 2, and the score is optimistic).

    ``distances`` adds other image distances ``name -> f(x, y) -> (batch,)``, e.g. ``lpips`` (the
    paper's Table 4 score), each as ``name`` (the translation), ``name_reconstruction`` and
    ``name_copy_content``, averaged over the pairs.
    """
    if not all(hasattr(data, a) for a in ("render", "draw_with_poses", "other_class")):
        raise ConfigError(f"content transfer error needs a dataset that renders ground truth (shapes3d-synthetic), not {type(data).__name__}; "
                          "evaluate a run trained with --arch lord --data shapes3d-synthetic (genvae bench translation trains them)")
    class_content_slices(models)  # fail early without class / content groups
    x_a, y_a, pose_a = data.draw_with_poses(n_pairs, seed)  # type: ignore[attr-defined]
    x_b, y_b, pose_b = data.draw_with_poses(n_pairs, seed + 1)  # type: ignore[attr-defined]
    same = y_a == y_b  # make the classes differ: shift B's class (its pose stays)
    if bool(same.any()):
        y_b = torch.where(same, data.other_class(y_b), y_b)  # type: ignore[attr-defined]
        x_b = data.render(y_b, pose_b)  # type: ignore[attr-defined]
    truth = data.render(y_a, pose_b)  # type: ignore[attr-defined]
    references = {"mse": truth}
    if hasattr(data, "with_shape_of"):
        references["mse_shape_from_content"] = data.render(data.with_shape_of(y_a, y_b), pose_b)  # type: ignore[attr-defined]
    distances = dict(distances or {})
    extra = [f"{name}{suffix}" for name in distances for suffix in ("", "_reconstruction", "_copy_content")]
    sums = dict.fromkeys([*references, "mse_reconstruction", *extra], 0.0)
    translations = []
    for start in range(0, n_pairs, batch_size):
        sl = slice(start, start + batch_size)
        translated = transfer(models, x_a[sl], x_b[sl]).cpu().float()
        translations.append(translated)
        for key, reference in references.items():
            sums[key] += (translated - reference[sl]).pow(2).sum().item()
        reconstructed = models.decode(encode_means(models, x_b[sl])).cpu().float()
        sums["mse_reconstruction"] += (reconstructed - x_b[sl]).pow(2).sum().item()
        for name, distance in distances.items():
            sums[name] += distance(translated, truth[sl]).sum().item()
            sums[f"{name}_reconstruction"] += distance(reconstructed, x_b[sl]).sum().item()
            sums[f"{name}_copy_content"] += distance(x_b[sl], truth[sl]).sum().item()
    n = truth.numel()
    rotations = rotation_fit(data, torch.cat(translations), y_a, pose_a, y_b, pose_b) if hasattr(data, "rotate_poses") else {}
    return {
        **{key: total / n for key, total in sums.items() if key not in extra},
        **{key: sums[key] / n_pairs for key in extra},
        **rotations,
        "mse_copy_content": (x_b - truth).pow(2).mean().item(),
        "mse_copy_class": (x_a - truth).pow(2).mean().item(),
        "mse_mean_image": (truth - truth.mean(0, keepdim=True)).pow(2).mean().item(),
        "n_pairs": n_pairs,
    }


ANGLE_OFFSETS = 24  # rotations tried per translation by rotation_fit: every 15°
ROTATION_TOLERANCE = 2 * math.pi / ANGLE_OFFSETS  # "carries that rotation": within one step (15°)
FOLLOWS_MIN_PER_PAIR = 4  # translations per pair of identities that "follows" needs on average


def rotation_fit(data: DataSource, translated: Tensor, y_a: Tensor, pose_a: Tensor, y_b: Tensor, pose_b: Tensor) -> dict[str, float]:
    """How the translations' rotations relate to A's and B's, from A's object rendered at B's
    position turned by each of ``ANGLE_OFFSETS`` rotations (per-pixel MSE to each translation):

    - ``mse_aligned``: the transfer MSE after the best constant rotation per (class of A, class of
      B), the one that fits that pair of identities best;
    - ``rotation_from_content``: the fraction of translations whose best-fitting rotation is
      within 15° of B's (the pose came from the content code);
    - ``rotation_from_class``: the fraction within 15° of A's own rotation (it stayed with the
      class code). By chance each is about 1/8; the rest fit neither (or an object with a
      rotational symmetry, e.g. a square without ``data.marker``, fits several angles);
    - ``rotation_follows_content`` / ``rotation_follows_class``: how closely the best-fitting
      rotation follows B's (A's) up to a constant per pair of identities, i.e. in a convention of
      the model's own: the mean resultant length of (best − B's angle) within each pair of
      identities, averaged with the pairs' counts. 1 when it follows exactly; by chance about
      0.89 / √(translations per pair of identities), so use many pairs per pair of identities;
      NaN with fewer than ``FOLLOWS_MIN_PER_PAIR`` on average (with one it is 1 by construction).
    """
    offsets = torch.arange(ANGLE_OFFSETS) * (2 * math.pi / ANGLE_OFFSETS)
    errors = torch.stack(
        [(translated - data.render(y_a, data.rotate_poses(pose_b, float(o)))).pow(2).flatten(1).mean(1) for o in offsets]  # type: ignore[attr-defined]
    )  # (offsets, pairs)
    identity_pair = y_a * (int(y_b.max()) + 1) + y_b
    pairs = [identity_pair == p for p in identity_pair.unique()]  # a mask per (class of A, class of B)
    aligned = sum(errors[:, m].sum(1).min().item() for m in pairs)
    best = pose_b[:, 0] + offsets[errors.argmin(0)]  # each translation's best-fitting rotation

    def within(angle: Tensor) -> float:
        gap = torch.remainder(best - angle + math.pi, 2 * math.pi) - math.pi
        return (gap.abs() <= ROTATION_TOLERANCE + 1e-6).float().mean().item()

    def follows(angle: Tensor) -> float:
        if len(y_a) < FOLLOWS_MIN_PER_PAIR * len(pairs):
            return math.nan
        gap = best - angle
        lengths = [torch.stack([gap[m].cos().sum(), gap[m].sin().sum()]).norm() for m in pairs]
        return (sum(lengths) / len(y_a)).item()  # Σ_pairs n_p R_p / n

    return {
        "mse_aligned": aligned / len(y_a),
        "rotation_from_content": within(pose_b[:, 0]),
        "rotation_from_class": within(pose_a[:, 0]),
        "rotation_follows_content": follows(pose_b[:, 0]),
        "rotation_follows_class": follows(pose_a[:, 0]),
    }


def pose_r2(codes: Tensor, groups: Mapping[str, int], y: Tensor, pose: Tensor) -> dict[str, dict[str, float]]:
    """How much of each true pose factor each latent group holds, as a held-out R²: per identity,
    a least-squares linear map (with a constant) from the group's posterior means to the factor
    (``rotation`` as (cos, sin), ``position`` as (x, y)) is fitted on the even-numbered samples and
    scored on the odd ones; R² is averaged over the factor's two coordinates and the identities.
    With too few samples per identity for a map per identity (fewer than 2·(the group's size + 1)
    in the fit half, e.g. ``data.palettes`` with 100+ identities), one map is fitted for all identities
    together: then a code that holds the pose in a way of its own for each identity scores low.
    1: the factor is a linear function of that code; about 0 (or below, on held-out data): no
    linear trace. A class/content split puts the pose in the content code and not in the class code."""
    pose = pose.double()
    factors = {"rotation": torch.stack([pose[:, 0].cos(), pose[:, 0].sin()], 1), "position": pose[:, 1:3]}
    fit = torch.arange(len(y)) % 2 == 0
    codes = codes.double()
    fewest = int(torch.unique(y[fit], return_counts=True)[1].min())
    result: dict[str, dict[str, float]] = {}
    for group, dims in group_slices(dict(groups)):
        design = torch.cat([codes[:, dims], torch.ones(len(y), 1, dtype=torch.float64)], 1)
        subsets = [y == identity for identity in y.unique()] if fewest >= 2 * design.shape[1] else [torch.ones_like(fit)]
        result[group] = {}
        for factor, target in factors.items():
            r2 = []
            for subset in subsets:
                train, test = subset & fit, subset & ~fit
                coef = torch.linalg.lstsq(design[train], target[train]).solution
                error = (design[test] @ coef - target[test]).pow(2).mean(0)
                r2.append((1 - error / target[test].var(0, correction=0)).mean())
            result[group][factor] = float(torch.stack(r2).mean())
    return result


@torch.no_grad()
def pose_probe(models: Models, data: DataSource, n: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """:func:`pose_r2` of ``n`` seeded images of shapes3d-synthetic (whose poses are known)."""
    x, y, pose = data.draw_with_poses(n, seed)  # type: ignore[attr-defined]
    codes = torch.cat([models.encode(chunk)[0].float().cpu() for chunk in x.split(500)])
    return pose_r2(codes, models.latent_groups, y, pose)


__all__ = [
    "translation_grid",
    "translation_cells",
    "transfer",
    "write_translation_grid",
    "content_transfer_error",
    "rotation_fit",
    "pose_r2",
    "pose_probe",
]
