"""2-D metrics of the paper's Section 6.1 / Table 2: KL, JSD and grid-normalized ELBO (gnELBO).

Computed exactly as the authors' 2-D code (``calculate_sample_kl`` and
``calculate_elbo_with_grid``) so that numbers are comparable with Table 2:

- KL: 5,000 real and 5,000 generated samples, ``numpy.histogram2d`` with 100 bins per axis,
  ``density=True``, range [-2·scale, 2·scale]² (scale 1 for 8gaussians, 2 otherwise);
  ``kl_div(log(fake + 1e-14), real, reduction='batchmean')`` on the 100×100 density histograms.
  Note the authors' argument order: this is Σ real·(log real − log fake) / 100, i.e. KL(real‖fake)
  of densities divided by the number of histogram rows (not a KL of probability vectors).
- JSD (authors' formula): M = ½(real + fake); ½(kl_div(log(real + 1e-14), M) + kl_div(log(fake +
  1e-14), M)), same reduction. Because of ``kl_div``'s argument order this is ½(KL(M‖real) +
  KL(M‖fake)) on densities, which is *not* bounded by log 2. We therefore also report
  ``jsd_textbook``: the Jensen–Shannon divergence of the two normalized histograms, in nats.
- Floor: with 5,000 samples in 100×100 bins the histograms are noisy, so even a perfect generator
  scores well above 0 (KL ≈ 0.9 on 8gaussians, 7–17 on the others). ``sampling_floor`` measures
  it: further draws of the data distribution scored as if they were a model's samples.
- gnELBO: energies e(x) = KL(q(z|x)‖p(z)) + ‖x − D(μ(x))‖² (encoder mean, β = 1) on a 1024×1024
  grid over [-2·scale, 2·scale]² and on 100 batches of 128 real samples; the real samples'
  energies divided by the sum of all energies (grid and real), averaged, in units of 1e-7.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Metric
from genvae.core.losses import kl_standard_normal
from genvae.errors import ConfigError

HIST_BINS = 100
NUM_SAMPLES = 5000
GRID_POINTS = 1024
GNELBO_BATCHES = 100
GNELBO_BATCH_SIZE = 128
GNELBO_UNIT = 1e-7
EPS = 1e-14
FLOOR_DRAWS = 5
FLOOR_SEED_OFFSET = 1000  # the floor's draws never reuse the evaluation's seeds (seed .. seed + 2)


# --------------------------------------------------------------------------------------------
# Histograms, KL and JSD
# --------------------------------------------------------------------------------------------


def plot_scale(data_name: str) -> float:
    from genvae.plugins.datasets.toy2d import PLOT_SCALE

    return PLOT_SCALE.get(data_name, 2.0)


def density_histogram(points: np.ndarray | Tensor, scale: float, bins: int = HIST_BINS) -> np.ndarray:
    """``np.histogram2d(x, y, bins, density=True, range=[[-2s, 2s]] * 2)`` (float64, bins × bins)."""
    if isinstance(points, Tensor):
        points = points.detach().cpu().numpy()
    lim = 2.0 * scale
    hist, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=bins, density=True, range=[[-lim, lim], [-lim, lim]])
    return hist


def _t(h: np.ndarray | Tensor) -> Tensor:
    return h if isinstance(h, Tensor) else torch.tensor(h)


def kl_authors(real_hist: np.ndarray | Tensor, fake_hist: np.ndarray | Tensor) -> float:
    """``kl_div(log(fake + 1e-14), real, reduction='batchmean')`` (the authors' KL)."""
    real, fake = _t(real_hist), _t(fake_hist)
    return F.kl_div(torch.log(fake + EPS), real, reduction="batchmean").item()


def jsd_authors(real_hist: np.ndarray | Tensor, fake_hist: np.ndarray | Tensor) -> float:
    """The authors' "JSD": ½(kl_div(log(real + ε), M) + kl_div(log(fake + ε), M)), M = ½(real + fake)."""
    real, fake = _t(real_hist), _t(fake_hist)
    m = 0.5 * (fake + real)
    kl_1 = F.kl_div(torch.log(real + EPS), m, reduction="batchmean")
    kl_2 = F.kl_div(torch.log(fake + EPS), m, reduction="batchmean")
    return (0.5 * (kl_1 + kl_2)).item()


def jsd_textbook(real_hist: np.ndarray | Tensor, fake_hist: np.ndarray | Tensor) -> float:
    """Jensen–Shannon divergence (nats, in [0, log 2]) of the two histograms normalized to sum 1.

    An empty histogram (no sample inside the range) is treated as maximally different (log 2);
    ``numpy.histogram2d(density=True)`` gives one as NaN in every bin (0 / 0), the zero array too.
    """
    p = _t(real_hist).double().flatten()
    q = _t(fake_hist).double().flatten()
    if not (p.sum() > 0 and q.sum() > 0):  # NaN fails the comparison too
        return math.log(2.0)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: Tensor, b: Tensor) -> Tensor:
        mask = a > 0
        return (a[mask] * (a[mask].log() - b[mask].log())).sum()

    return float(0.5 * (kl(p, m) + kl(q, m)))


def sample_divergences(real: np.ndarray | Tensor, fake: np.ndarray | Tensor, scale: float, bins: int = HIST_BINS) -> dict[str, float]:
    """KL, authors' JSD and textbook JSD between real and generated 2-D samples."""
    real_hist = density_histogram(real, scale, bins)
    fake_hist = density_histogram(fake, scale, bins)
    return {
        "kl": kl_authors(real_hist, fake_hist),
        "jsd": jsd_authors(real_hist, fake_hist),
        "jsd_textbook": jsd_textbook(real_hist, fake_hist),
    }


# --------------------------------------------------------------------------------------------
# Energies and gnELBO
# --------------------------------------------------------------------------------------------


def setup_grid(scale: float, n_pts: int = GRID_POINTS) -> Tensor:
    """(n_pts², 2) grid points as the authors' ``setup_grid``: linspace and meshgrid(indexing='ij')."""
    lim = 2.0 * scale
    x = torch.linspace(-lim, lim, n_pts)
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    return torch.stack((xx.flatten(), yy.flatten()), dim=1)


@torch.no_grad()
def elbo_energy(encoder: Callable, decoder: Callable, x: Tensor, chunk: int = 65536, beta_kl: float = 1.0, beta_rec: float = 1.0) -> Tensor:
    """e(x) = β_kl·KL(q(z|x)‖p(z)) + β_rec·‖x − D(μ(x))‖² per point (the negative ELBO at z = μ)."""
    out = []
    for xi in x.split(chunk, dim=0):
        mu, logvar = encoder(xi)
        rec = decoder(mu)
        rec_err = (rec.reshape(xi.shape[0], -1) - xi.reshape(xi.shape[0], -1)).pow(2).sum(1)
        out.append(beta_kl * kl_standard_normal(mu, logvar) + beta_rec * rec_err)
    return torch.cat(out)


def grid_normalized_elbo(grid_energy: Tensor, real_energy: Tensor) -> float:
    """mean(real / Σ(grid ∪ real)) (the authors' normalisation, float32), in units of 1e-7."""
    total = torch.cat([grid_energy.reshape(-1), real_energy.reshape(-1)]).sum()
    return (real_energy / total).mean().item() / GNELBO_UNIT


# --------------------------------------------------------------------------------------------
# Sampling helpers
# --------------------------------------------------------------------------------------------


def real_samples(data: Any, n: int, seed: int) -> Tensor:
    """n samples of the data distribution from a dedicated generator seeded by ``seed``."""
    if hasattr(data, "sampler"):
        return data.sampler(n, torch.Generator().manual_seed(seed))
    if hasattr(data, "sample"):
        return data.sample(n, seed=seed)
    return data.test_batch(n, seed=seed).x


@torch.no_grad()
def generated_samples(decoder: Callable, z_dim: int, n: int, seed: int) -> Tensor:
    """D(z), z ~ N(0, I) drawn from a dedicated generator seeded by ``seed``."""
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    return decoder(z).reshape(n, -1)


def compute_metrics(
    encoder: Callable,
    decoder: Callable,
    data: Any,
    scale: float,
    z_dim: int,
    seed: int = 0,
    num_samples: int = NUM_SAMPLES,
    grid_points: int = GRID_POINTS,
    gnelbo_batches: int = GNELBO_BATCHES,
    gnelbo_batch_size: int = GNELBO_BATCH_SIZE,
    return_samples: bool = False,
) -> dict[str, Any]:
    """All three metrics of one model (networks in eval mode). Seeds: real samples ``seed``,
    prior noise ``seed + 1``, gnELBO real batches ``seed + 2``."""
    with torch.no_grad():
        real = real_samples(data, num_samples, seed)
        fake = generated_samples(decoder, z_dim, num_samples, seed + 1)
        out: dict[str, Any] = sample_divergences(real, fake, scale)
        grid_e = elbo_energy(encoder, decoder, setup_grid(scale, grid_points))
        g = torch.Generator().manual_seed(seed + 2)
        sampler = getattr(data, "sampler", None)
        batches = [
            sampler(gnelbo_batch_size, g) if sampler is not None else real_samples(data, gnelbo_batch_size, seed + 3 + i)
            for i in range(gnelbo_batches)
        ]
        real_e = elbo_energy(encoder, decoder, torch.cat(batches))
        out["gnelbo"] = grid_normalized_elbo(grid_e, real_e)
        out["fraction_outside_range"] = float(((fake.abs() > 2 * scale).any(dim=1)).float().mean())
    if return_samples:
        out["_real"], out["_fake"], out["_grid_energy"] = real, fake, grid_e
    return out


def squared_norm_gnelbo(data: Any, scale: float, seed: int = 0, **options: Any) -> float:
    """gnELBO of the energy e(x) = ‖x‖²: what a network scores that encodes every point to the
    prior (KL 0) and decodes every code to the origin — nearly what an untrained one does. Data
    lying nearer the origin than the grid's average point scores well by that alone (2spirals and
    rings: better than every model of the paper's Table 2), so a model's gnELBO says something
    only next to this reference. Same real samples and grid as :func:`compute_metrics`."""
    options = {k: v for k, v in options.items() if k in ("grid_points", "gnelbo_batches", "gnelbo_batch_size")}

    def prior(x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros(len(x), 1), torch.zeros(len(x), 1)

    def origin(z: Tensor) -> Tensor:
        return torch.zeros(len(z), 2)

    return compute_metrics(prior, origin, data, scale, 1, seed=seed, num_samples=1, **options)["gnelbo"]


def sampling_floor(data: Any, scale: float, seed: int = 0, num_samples: int = NUM_SAMPLES, draws: int = FLOOR_DRAWS) -> dict[str, tuple[float, float]]:
    """KL and JSDs of a perfect generator, as (mean, std) over ``draws``: the evaluation's real
    samples (``seed``) against further independent draws of the data distribution, each scored as
    a model's samples would be. A model's score minus this floor is what the model leaves out."""
    real = real_samples(data, num_samples, seed)
    scores = [sample_divergences(real, real_samples(data, num_samples, seed + FLOOR_SEED_OFFSET + k), scale) for k in range(draws)]
    return {k: (float(np.mean([s[k] for s in scores])), float(np.std([s[k] for s in scores]))) for k in scores[0]}


# --------------------------------------------------------------------------------------------
# The registered metric
# --------------------------------------------------------------------------------------------


def evaluate(run: Any, seed: int = 0, out_dir: str | Path | None = None, figures: bool = True, **options: Any) -> dict[str, Any]:
    """Evaluate a ``LoadedRun`` of a 2-D dataset: writes ``metrics.json``, ``eval_samples.png``
    and ``eval_density.png`` into ``out_dir`` (default: the run directory); returns the metrics."""
    from genvae.core.config import write_json
    from genvae.viz.points import density_image, scatter_real_fake

    shape = tuple(run.data.shape)
    if shape != (2,):
        raise ConfigError(f"run {run.path} was trained on {run.config.data['name']} (samples of shape {shape}); toy2d needs a run "
                          "trained on a 2-D dataset such as 8gaussians; for image runs use 'genvae eval fid' or 'genvae eval ood'")  # fmt: skip
    out = Path(out_dir) if out_dir is not None else Path(run.path)
    out.mkdir(parents=True, exist_ok=True)
    run.encoder.eval(), run.decoder.eval()
    models = run.models  # moves inputs to the networks' device and outputs back (a run training on a GPU)
    data_name = run.config.data["name"]
    scale = getattr(run.data, "plot_scale", None) or plot_scale(data_name)
    z_dim = sum(run.encoder.latent_groups.values())
    res = compute_metrics(models.encode, models.decode, run.data, scale, z_dim, seed=seed, return_samples=True, **options)
    real, fake, grid_e = res.pop("_real"), res.pop("_fake"), res.pop("_grid_energy")
    n = int(round(math.sqrt(grid_e.numel())))
    floor = sampling_floor(run.data, scale, seed, options.get("num_samples", NUM_SAMPLES))
    energy_norm = squared_norm_gnelbo(run.data, scale, seed, **options)
    points = grid_e.numel() + options.get("gnelbo_batches", GNELBO_BATCHES) * options.get("gnelbo_batch_size", GNELBO_BATCH_SIZE)
    metrics = {
        "dataset": data_name,
        "objective": run.config.objective["name"],
        "step": getattr(run, "step", None),
        "seed": seed,
        **res,
        "perfect_model": {k: mean for k, (mean, _) in floor.items()},
        "gnelbo_reference": {"squared_norm": energy_norm, "uniform": 1.0 / points / GNELBO_UNIT},
        "units": {"gnelbo": "1e-7", "kl": "authors' kl_div batchmean on density histograms", "jsd": "authors' formula", "jsd_textbook": "nats",
                  "perfect_model": f"kl and jsds of further draws of the data (mean of {FLOOR_DRAWS}): the floor set by the histograms' noise",
                  "gnelbo_reference": "gnelbo of the energy |x|^2 (encoder = prior, decoder = origin; about what an untrained network scores) and of equal energy everywhere"},
    }
    write_json(out / "metrics.json", metrics)
    if figures:
        title = f"{run.config.objective['name']} on {data_name}"
        scatter_real_fake(real, fake, scale, out / "eval_samples.png", title=title)
        density_image(torch.exp(-grid_e).reshape(n, n), scale, out / "eval_density.png", title=title)
    return metrics


@hookimpl
def genvae_register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "toy2d",
        Metric(
            evaluate=evaluate,
            description="2-D KL / JSD of 100×100 histograms and grid-normalized ELBO (paper Table 2), plus figures",
        ),
    )
