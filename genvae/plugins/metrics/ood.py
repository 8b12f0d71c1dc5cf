"""Out-of-distribution detection by likelihood (paper Section 6.5, Appendix 9.7, Table 7, Figure 8).

Scores (higher = more in-distribution), per sample, in nats:

- ``elbo``: E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), the expectation over ``samples`` draws
  z ~ q(z|x), the KL in closed form;
- ``iwae``: log (1/M) Σ_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), M = ``samples`` (the paper's
  estimate with M = 5), by logsumexp. Its expectation is ≥ the ELBO and grows to log p(x) with M.

**The decoder density.** Training minimises β_rec·L_rec + KL; the likelihood consistent with it:

- ``mse`` (L_rec = Σ (x − x̂)², the authors' loss): a Gaussian N(x̂, σ²I) with σ² = 1 / (2β_rec),
  log p(x|z) = −β_rec·L_rec + (D/2)·log(β_rec / π);
- ``gaussian`` (½ Σ (x − x̂)² + ½D log 2π): a Gaussian with σ² = 1 / β_rec,
  log p(x|z) = −β_rec·½Σ (x − x̂)² + (D/2)·log(β_rec / 2π);
- ``bce``: Bernoulli, log p(x|z) = −L_rec (β_rec is not a temperature of a Bernoulli; for
  non-binary x this is not a normalised density of x);
- any other (plugin) loss: −β_rec·L_rec, i.e. a density up to an unknown constant.

D is the number of pixels. The constant depends only on D and β_rec, so it is the same for in-
and out-of-distribution data of the same shape and AUROC does not depend on it; it is there so
that the scores are log-densities and the IWAE and ELBO use the same p(x|z) (IWAE ≥ ELBO holds
with any common constant). β_kl is not used: with β_kl ≠ 1 the training loss is not a bound on
log p(x); the scores are the β_kl = 1 ELBO / IWAE. Pixel values are in [0, 1] and the density is
that of continuous pixels (no dequantisation), as the paper.

**AUROC** (sklearn ``roc_auc_score``): OOD is the positive class and −score the detector, so
1.0 means every OOD sample has a lower score than every in-distribution sample.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from genvae.core.checkpoint import append_metrics_record
from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import DataSource, Metric, num_classes_of
from genvae.core.losses import kl_standard_normal, reconstruction_error
from genvae.core.run import UnavailableData
from genvae.errors import ConfigError, DataError, worded

SCORES = ("elbo", "iwae")
DEFAULT_SAMPLES = 5  # the paper's M
LOG_2PI = math.log(2.0 * math.pi)
RESULTS_FILE = "ood.jsonl"

# Paper Table 7 (AUROC, mean ± std over 3 seeds; ELBO score).
PAPER_TABLE7: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("mnist", "fashion-mnist"): {"vae": (0.992, 0.002), "soft-intro": (0.999, 0.0002)},
    ("fashion-mnist", "mnist"): {"vae": (0.996, 0.0009), "soft-intro": (0.999, 0.0004)},
    ("cifar10", "svhn"): {"vae": (0.378, 0.01), "soft-intro": (0.9987, 0.008)},
    ("svhn", "cifar10"): {"vae": (0.936, 0.003), "soft-intro": (0.966, 0.02)},
}


# --------------------------------------------------------------------------------------------
# Likelihoods and scores
# --------------------------------------------------------------------------------------------


def log_mean_exp(u: Tensor, dim: int = 0) -> Tensor:
    """log (1/M) Σ_i exp(u_i) along ``dim``, stable for very negative (or large) u (logsumexp)."""
    return torch.logsumexp(u, dim=dim) - math.log(u.shape[dim])


def log_likelihood(x: Tensor, x_rec: Tensor, recon: str = "mse", beta_rec: float = 1.0) -> Tensor:
    """log p(x|z) per sample for the decoder mean ``x_rec`` (see the module docstring)."""
    d = x[0].numel()
    if recon == "mse":
        sq = (x_rec - x).pow(2).flatten(1).sum(1)
        return -beta_rec * sq + 0.5 * d * math.log(beta_rec / math.pi)
    if recon == "gaussian":
        sq = (x_rec - x).pow(2).flatten(1).sum(1)
        return -0.5 * beta_rec * sq + 0.5 * d * math.log(beta_rec / (2.0 * math.pi))
    if recon == "bce":
        return -reconstruction_error(x, x_rec, "bce")
    return -beta_rec * reconstruction_error(x, x_rec, recon)


def log_normal_diag(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; μ, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: Tensor) -> Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


@torch.no_grad()
def likelihood_scores(
    encoder: Callable,
    decoder: Callable,
    x: Tensor,
    y: Tensor | None = None,
    samples: int = DEFAULT_SAMPLES,
    recon: str = "mse",
    beta_rec: float = 1.0,
    generator: torch.Generator | None = None,
    max_decode: int = 4096,
) -> dict[str, Tensor]:
    """Both scores of a batch from the same M draws z_i ~ q(z|x): ``elbo`` and ``iwae`` (B,).
    Draws are decoded together, at most ``max_decode`` images per decoder call."""
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    mu, logvar = encoder(x, y)
    std = torch.exp(0.5 * logvar)
    b = x.shape[0]
    per_call = max(1, max_decode // max(b, 1))  # draws decoded together (one batch of per_call·B)
    log_px, log_w = [], []
    for start in range(0, samples, per_call):
        m = min(per_call, samples - start)
        eps = torch.randn((m, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + std * eps  # (m, B, d)
        x_rec = decoder(z.reshape(m * b, -1), None if y is None else y.repeat(m))
        lp = log_likelihood(x.repeat(m, *([1] * (x.dim() - 1))), x_rec, recon, beta_rec).double().view(m, b)
        log_px.append(lp)
        log_w.append(lp + log_standard_normal(z).double() - log_normal_diag(z, mu, logvar).double())
    elbo = torch.cat(log_px).mean(0) - kl_standard_normal(mu, logvar).double()
    return {"elbo": elbo, "iwae": log_mean_exp(torch.cat(log_w), dim=0)}


def auroc(in_scores: np.ndarray | Tensor, ood_scores: np.ndarray | Tensor) -> float:
    """AUROC with OOD as the positive class and −score as the detector."""
    from sklearn.metrics import roc_auc_score

    a = np.asarray(in_scores, dtype=np.float64).ravel()
    b = np.asarray(ood_scores, dtype=np.float64).ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("OOD scores contain inf or NaN; the model's likelihood overflowed")
    labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    return float(roc_auc_score(labels, -np.concatenate([a, b])))


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def open_eval_data(data: str | DataSource | None, default: DataSource, split: str) -> tuple[DataSource, str]:
    """A DataSource for ``data`` (plugin name, ``name:key=value,...``, folder, or object). A
    source whose training files are missing is reopened with ``split=test`` (e.g. MNIST here)."""
    if data is None:
        if isinstance(default, UnavailableData):
            raise default.unavailable()
        return default, "(run's data)"
    if isinstance(data, DataSource):
        return data, type(data).__name__
    from genvae.core.plugins import get_plugins
    from genvae.core.run import data_options
    from genvae.plugins.metrics.fid import at_run_size, open_data

    try:
        return open_data(data, at_run_size(data, tuple(default.shape)))
    except DataError:
        plugins = get_plugins()
        if split == "test" and data in plugins.datasets and "split" in data_options(plugins, data):
            return open_data(f"{data}:split=test")
        raise


def require_split(split: str) -> None:
    """A one-line ConfigError unless ``split`` is ``train`` or ``test``."""
    if split not in ("train", "test"):
        raise ConfigError(f"--split must be train or test, got {split!r}")


def folder_of(data: DataSource) -> Path | None:
    """The folder a source reads its images from (resolved), None for a source without one."""
    path = getattr(data, "path", None)
    return None if path is None else Path(path).resolve()


def split_label(data: DataSource, split: str, run_data: DataSource) -> str:
    """``split`` as the results report it. A source without a held-out split
    (``has_test_split = False``: a plain image folder) serves all its images, its training ones,
    as ``test`` too: unless it is another folder than the run's (``run_data``), the label then
    says so and a warning tells the user."""
    if split != "test" or getattr(data, "has_test_split", True):
        return split
    here, trained_on = folder_of(data), folder_of(run_data)
    if here is not None and trained_on is not None and here != trained_on:
        return split  # not the folder the run trained on: all of it is held out
    items = "images" if data.kind == "images" else "rows"
    if "test_fraction" in inspect.signature(type(data)).parameters:  # points, image-array (genvae.train(data=array))
        fix = f"hold {items} out with --set data.test_fraction=F when training, or evaluate other data"
    else:
        fix = "to evaluate held-out images, put them in another folder and evaluate that one"
    warnings.warn(worded(f"the {data.name} dataset has no held-out split: its 'test' {items} are the training ones; {fix}"), stacklevel=2)
    return f"train ({data.name} has no test split)"


def require_run_shape(data: DataSource, run: Any) -> None:
    """A one-line DataError unless ``data`` has the shape the run's model was trained on."""
    if tuple(data.shape) != tuple(run.data.shape):
        want = tuple(run.data.shape)
        hint = ""
        if len(want) == 3:  # the folder and IDX datasets resize: name the option
            greyscale = f"; mnist / fashion-mnist: NAME:resolution={want[-1]}" if want[0] == 1 else ""  # always one channel
            hint = f" (an image folder: folder:path=DIR,resolution={want[-1]},channels={want[0]}{greyscale})"
        raise DataError(f"dataset {getattr(data, 'name', type(data).__name__)!r} has shape {tuple(data.shape)} but the model was trained on {want}; give data of the model's shape{hint}")


def image_indices(data: DataSource, split: str, n: int | None, seed: int) -> Tensor | None:
    """Which images of a random-access source (``get`` / ``split_size``) :func:`iter_images`
    serves, in order: the first ``n``, or for a part of the training split a seeded random
    choice; None for a source without random access."""
    if not (hasattr(data, "get") and hasattr(data, "split_size")):
        return None
    size = data.split_size(split)
    total = size if n is None else min(n, size)
    if split == "train" and n is not None and n < size:
        return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:total]
    return torch.arange(total)


def iter_images(data: DataSource, split: str, n: int | None, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor | None]]:
    """(x, y) batches: the first ``n`` images of a split (random access where the source offers
    ``get`` / ``split_size``), else ``test_batch`` / the training stream."""
    if (index_all := image_indices(data, split, n, seed)) is not None:
        for chunk in index_all.split(batch_size):
            b = data.get(chunk, split)
            yield b.x, b.y
        return
    total = n or 10_000
    if split == "test":
        b = data.test_batch(total, seed=seed)
        for i in range(0, total, batch_size):
            yield b.x[i : i + batch_size], None if b.y is None else b.y[i : i + batch_size]
        return
    done = 0
    for b in data.train_stream(batch_size, seed=seed):
        take = min(len(b.x), total - done)
        yield b.x[:take], None if b.y is None else b.y[:take]
        done += take
        if done >= total:
            return


# --------------------------------------------------------------------------------------------
# Evaluation of a run
# --------------------------------------------------------------------------------------------


def run_scores(run: Any, data: DataSource, split: str, n: int | None, samples: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Both scores (``elbo``, ``iwae``) of ``n`` images of ``data``'s ``split`` under a ``LoadedRun``."""
    require_run_shape(data, run)
    encoder, decoder = run.encoder.eval(), run.decoder.eval()
    device = next(encoder.parameters()).device
    cfg = run.config.objective
    conditional = num_classes_of(encoder) > 0
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in SCORES}
    for x, y in iter_images(data, split, n, batch_size, seed):
        if conditional and y is None:
            raise DataError(f"the run is class-conditional: it scores each image with its class, and the {getattr(data, 'name', type(data).__name__)} "
                            "data given has no labels; give labelled data, e.g. image-array:path=F.npz,labels=KEY or folder:path=DIR,labels=true")  # fmt: skip
        s = likelihood_scores(encoder, decoder, x.to(device), y.to(device) if conditional else None, samples,
                              cfg.get("recon_loss", "mse"), float(cfg.get("beta_rec", 1.0)), generator)  # fmt: skip
        for k in SCORES:
            out[k].append(s[k].cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def plot_histograms(scores: Mapping[str, np.ndarray], path: Path, title: str = "", score: str = "elbo") -> Path:
    """Figure 8: overlaid histograms of the scores of each set (train / test / OOD)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_scores = np.concatenate(list(scores.values()))
    lo, hi = np.percentile(all_scores, [0.5, 99.5])
    bins = np.linspace(lo, hi, 80)  # the 1 % extremes are clipped into the end bins
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in scores.items():
        ax.hist(np.clip(s, lo, hi), bins=bins, alpha=0.5, density=True, label=f"{name} (n={len(s)})")
    ax.set_xlabel(f"{score} (nats); the lowest and highest 0.5 % are drawn in the end bins")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def images_at(data: DataSource, split: str, n: int | None, batch_size: int, seed: int, positions: Sequence[int]) -> Tensor:
    """The images at ``positions`` in the order :func:`iter_images` yields them (same arguments)."""
    wanted = {int(p): k for k, p in enumerate(positions)}
    found: list[Tensor | None] = [None] * len(wanted)
    start = 0
    for x, _ in iter_images(data, split, n, batch_size, seed):
        for i in range(len(x)):
            if start + i in wanted:
                found[wanted[start + i]] = x[i]
        start += len(x)
        if all(f is not None for f in found):
            break
    return torch.stack(found)  # type: ignore[arg-type]


FEW_IMAGES = 50  # fewer images on either side of the AUROC than this: it is coarse, and evaluate_ood says so


def save_extremes(scores: Mapping[str, np.ndarray], in_source: DataSource, out_source: DataSource, n: int | None,
                  batch_size: int, seed: int, path: Path, count: int = 16) -> Path:  # fmt: skip
    """Where the detector fails: top row, the ``count`` OOD images with the highest scores (most
    in-distribution-looking); bottom row, the in-distribution test images with the lowest."""
    from genvae.viz.images import make_grid, save_grid

    count = min(count, len(scores["ood"]), len(scores["test"]))
    fooling = images_at(out_source, "test", n, batch_size, seed + 3, np.argsort(-scores["ood"])[:count])
    rejected = images_at(in_source, "test", n, batch_size, seed + 2, np.argsort(scores["test"])[:count])
    if fooling.shape[1] != rejected.shape[1]:
        fooling, rejected = (t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t for t in (fooling, rejected))
    caption = "top row: OOD images scored most in-distribution; bottom row: in-distribution test images scored least"
    return save_grid(make_grid(torch.cat([fooling, rejected]), nrow=count), path, caption)


def evaluate_ood(
    run: Any,
    in_data: str | DataSource | None = None,
    out_data: str | DataSource | None = None,
    score: str = "elbo",
    samples: int = DEFAULT_SAMPLES,
    n: int | None = None,
    n_train: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    figure: bool = True,
    write: bool = True,
) -> dict[str, Any]:
    """AUROC of in-distribution test images (``in_data``, default the run's dataset) against
    ``out_data``'s test images; ``n`` images of each (default: whole test splits), plus ``n_train``
    training images (default ``n``, at most 10,000) for the histogram. Writes
    ``RUN/metrics/ood-<in>-vs-<out>-<score>.png`` (histograms), ``...-extremes.png`` (see
    :func:`save_extremes`) and appends to ``RUN/metrics/ood.jsonl``."""
    if score not in SCORES:
        raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    if out_data is None:
        raise ConfigError("OOD evaluation needs out-of-distribution data: --out DATA (e.g. mnist; while training "
                          "--set 'train.eval_options={ood={out=\"mnist\"}}', with 'genvae eval metric ood RUN --option out=mnist')")  # fmt: skip
    for flag, value in (("--num-images", n), ("--samples", samples), ("n_train", n_train), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    start = time.perf_counter()
    in_source, in_label = open_eval_data(in_data, run.data, "test")
    out_source, out_label = open_eval_data(out_data, run.data, "test")
    in_label = run.config.data["name"] if in_data is None else in_label
    same_folder = folder_of(in_source) is not None and folder_of(in_source) == folder_of(out_source)
    if same_folder or (type(in_source) is type(out_source) and in_label == out_label):
        warnings.warn(worded(f"the in-distribution and out-of-distribution data are the same ({out_label}): the AUROC is about 0.5 by "
                             "construction; give other data to --out"), stacklevel=2)  # fmt: skip
    scores = {
        "train": run_scores(run, in_source, "train", n_train or min(n or 10_000, 10_000), samples, batch_size, seed + 1)[score],
        "test": run_scores(run, in_source, "test", n, samples, batch_size, seed + 2)[score],
        "ood": run_scores(run, out_source, "test", n, samples, batch_size, seed + 3)[score],
    }
    if (fewest := min(len(scores["test"]), len(scores["ood"]))) < FEW_IMAGES:
        warnings.warn(f"the AUROC compares {len(scores['test'])} in-distribution with {len(scores['ood'])} out-of-distribution "
                      f"images: with so few ({fewest}) it is coarse; use more images", stacklevel=2)  # fmt: skip
    result: dict[str, Any] = {
        "auroc": auroc(scores["test"], scores["ood"]),
        "auroc_train_vs_ood": auroc(scores["train"], scores["ood"]),
        "score": score,
        "samples": samples,
        "in": in_label,
        "in_split": split_label(in_source, "test", run.data),
        "out": out_label,
        "objective": run.config.objective["name"],
        "recon_loss": run.config.objective.get("recon_loss", "mse"),
        "run": str(run.path),
        "step": getattr(run, "step", None),
        "seed": seed,
        **{f"mean_{k}": float(v.mean()) for k, v in scores.items()},
        **{f"n_{k}": len(v) for k, v in scores.items()},
    }
    if figure:
        safe = lambda s: "".join(c if c.isalnum() or c in "-_" else "_" for c in s)  # noqa: E731
        path = Path(run.path) / "metrics" / f"ood-{safe(in_label)}-vs-{safe(out_label)}-{score}.png"
        short = out_label.split(":")[0]
        title = f"{result['objective']}: {in_label} (train / test) vs {short} (OOD), AUROC {result['auroc']:.4f}"
        result["figure"] = str(plot_histograms({f"{in_label} train": scores["train"], f"{in_label} test": scores["test"],
                                                f"{short} (OOD)": scores["ood"]}, path, title, score))  # fmt: skip
        if len(in_source.shape) == 3:  # the extremes are shown as pictures: images only
            extremes = Path(str(path).removesuffix(".png") + "-extremes.png")
            result["figure_extremes"] = str(save_extremes(scores, in_source, out_source, n, batch_size, seed, extremes))
    result["seconds"] = round(time.perf_counter() - start, 2)
    if write:
        append_metrics_record(run.path, RESULTS_FILE, result)
    result["_scores"] = scores
    return result


def evaluate(run: Any, seed: int = 0, out: str | None = None, **options: Any) -> dict[str, Any]:
    """The registered metric: ``genvae eval ood RUN --option out=mnist [--option score=iwae]``."""
    in_data = options.pop("in", options.pop("in_data", None))
    result = evaluate_ood(run, in_data=in_data, out_data=out or options.pop("out_data", None), seed=seed, **options)
    result.pop("_scores", None)
    return result


@hookimpl
def genvae_register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register("ood", Metric(evaluate=evaluate, description="OOD detection AUROC by ELBO or IWAE log-likelihood, with histograms (paper Sec. 6.5, Table 7)"))
