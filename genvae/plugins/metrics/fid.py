"""FID, KID and precision / recall of generated images (paper Section 6.3: FID of 50,000 samples
against the training images).

- **Reference statistics** (EDM's ``ref`` / ``calc`` split): :func:`compute_reference_stats`
  extracts features of a dataset once and saves ``mu``, ``sigma`` (float64), ``n``, the feature
  settings (JSON) and a random subset of the features themselves (for KID and precision / recall)
  as ``.npz``. :func:`evaluate_fid` reuses it and refuses one computed with other settings.
- The numbers: Fréchet distance, KID and precision / recall of the two feature sets
  (``distances.py``), from features of a registered extractor (``features.py``: ``inception``
  with the user's weight file, ``random-conv``; ``classifier.py``: ``classifier``).

Generation and feature extraction run in batches under Accelerate: each process generates its
share of the batches (prior noise seeded per batch, so the samples do not depend on the number
of processes), features are gathered with ``accelerator.gather``. Results are appended to
``RUN/metrics/fid.jsonl`` with every setting used.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from genvae.core.checkpoint import append_metrics_record
from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import DataSource, Metric, num_classes_of
from genvae.errors import ConfigError, DataError, PluginError
from genvae.plugins.datasets.points_file import numpy_read_error
from genvae.plugins.metrics.distances import KID_SUBSET_SIZE, KID_SUBSETS, PR_NEIGHBORHOOD, feature_statistics, frechet_distance, kernel_inception_distance, precision_recall
from genvae.plugins.metrics.features import FeatureExtractor, build_feature_extractor

RESULTS_FILE = "fid.jsonl"
NUM_SAMPLES = 50_000  # the paper's Section 6.3
SPLITS = ("train", "test")
KEEP_REF_FEATURES = 10_000  # features stored in the reference file for KID and precision / recall


# --------------------------------------------------------------------------------------------
# Batched, distributed feature extraction
# --------------------------------------------------------------------------------------------


def _accelerator(accelerator: Any = None) -> Any:
    if accelerator is not None:
        return accelerator
    from accelerate import Accelerator

    return Accelerator()


def _progress(enabled: bool, description: str, total: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from genvae.core.progress import ProgressLines, progress_mode

    if progress_mode(enabled, True) == "lines":
        return ProgressLines(description, total), None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), disable=not enabled, transient=True)  # fmt: skip
    task = progress.add_task(description, total=total)
    return progress, task


def distributed_features(
    make_batch: Callable[[int], Tensor],
    num_batches: int,
    batch_size: int,
    extractor: FeatureExtractor,
    accelerator: Any = None,
    progress: bool = True,
    description: str = "features",
) -> Tensor:
    """Features of batches 0 … num_batches − 1 (each at most ``batch_size`` images, made by
    ``make_batch(b)``), in batch order, on every process. Process p handles batches
    p, p + W, p + 2W, …; each round's features (padded to ``batch_size`` rows) are gathered."""
    acc = _accelerator(accelerator)
    rank, world = acc.process_index, acc.num_processes
    rounds = -(-num_batches // world)
    out: list[Tensor] = []
    bar, task = _progress(progress and acc.is_main_process, description, num_batches)
    with bar, torch.no_grad():
        for r in range(rounds):
            b = r * world + rank
            feats = torch.zeros(batch_size, extractor.dim, device=acc.device)
            count = torch.zeros(1, dtype=torch.long, device=acc.device)
            if b < num_batches:
                images = make_batch(b)
                if len(images) > batch_size:
                    raise DataError(f"batch {b} has {len(images)} images, more than batch_size {batch_size}")
                f = extractor(images.to(acc.device)).float()
                feats[: len(f)] = f
                count[0] = len(f)
            all_feats = acc.gather(feats).reshape(world, batch_size, -1)
            all_counts = acc.gather(count).reshape(world)
            for p in range(world):
                out.append(all_feats[p, : int(all_counts[p])].cpu())
            bar.update(task, advance=min(world, num_batches - r * world))
    return torch.cat(out) if out else torch.zeros(0, extractor.dim)


# --------------------------------------------------------------------------------------------
# Reference statistics
# --------------------------------------------------------------------------------------------


def open_data(data: str | Path | DataSource, options: Mapping[str, Any] | None = None, stats_ok: bool = False) -> tuple[DataSource, str]:
    """A DataSource from a dataset plugin name (``mnist``), ``name:key=value,...``, a folder of
    images or a file of rows (``points``). Options are checked and converted as ``genvae train``'s ``data.*`` settings.
    ``stats_ok``: the caller also accepts a .npz statistics file (said in the error)."""
    if isinstance(data, DataSource):
        return data, type(data).__name__
    from genvae.core.config import parse_spec_options, validate_options
    from genvae.core.plugins import get_plugins
    from genvae.core.run import data_options, dataset_of_path

    plugins = get_plugins()
    text = str(data)
    opts = dict(options or {})
    path = Path(text).expanduser()
    if text not in plugins.datasets.names() and (name := dataset_of_path(path)):
        label = f"{name}:{path.resolve()}"
        opts.setdefault("path", str(path))
    else:
        name, _, rest = text.partition(":")
        spec = parse_spec_options(rest)
        opts.update(spec)
        if name not in plugins.datasets:
            raise PluginError(_unknown_data_message(text, name, plugins.datasets.names(), stats_ok))
        label = text
        if "path" in spec:  # named as the path form names it (name:/absolute/path), so that records of one file compare equal
            others = "".join(f",{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(spec.items()) if k != "path")
            label = f"{name}:{Path(str(spec['path'])).expanduser().resolve()}{others}"
    factory = plugins.datasets.get(name)
    return factory(**validate_options("data", name, opts, data_options(plugins, name))), label


def at_run_size(data: Any, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """Options that open a folder of images (a path, or ``folder:...`` without its own
    resolution / channels) at the run's image size and channels instead of the folder dataset's
    defaults (64 px, RGB)."""
    text = str(data)
    if isinstance(data, (str, Path)) and len(shape) == 3 and (Path(text).expanduser().is_dir() or text.startswith("folder:")):
        return {"resolution": shape[-1], "channels": shape[0]}
    return None


def _unknown_data_message(text: str, name: str, datasets: list[str], stats_ok: bool) -> str:
    import difflib

    close = difflib.get_close_matches(name, datasets, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    kinds = "a .npz statistics file, a dataset name nor an existing folder" if stats_ok else "a dataset name nor an existing folder"
    return f"{text!r} is neither {kinds} of images; {hint}datasets: {', '.join(datasets)}"


def _data_batches(data: DataSource, split: str, num_samples: int | None, batch_size: int, seed: int) -> tuple[int, Callable[[int], Tensor]]:
    """(number of batches, batch b → float images) over the first ``num_samples`` images of a split
    (random access where the source offers ``get`` / ``split_size``; a seeded stream otherwise)."""
    if hasattr(data, "get") and hasattr(data, "split_size"):
        size = data.split_size(split)
        n = size if num_samples is None else min(num_samples, size)
        if num_samples is not None and num_samples > size:
            raise DataError(f"the {split} split has {size} images, fewer than the {num_samples} asked for")
        return -(-n // batch_size), lambda b: data.get(torch.arange(b * batch_size, min(n, (b + 1) * batch_size)), split).x
    if num_samples is None:
        raise ConfigError(f"{type(data).__name__} cannot list its {split} split; give --num-samples")
    if split == "test":
        x = data.test_batch(num_samples, seed=seed).x
        return -(-num_samples // batch_size), lambda b: x[b * batch_size : (b + 1) * batch_size]
    cache: dict[int, Tensor] = {}
    stream: Iterator = iter(data.train_stream(batch_size, seed=seed))

    def batch(b: int) -> Tensor:
        while b not in cache:
            cache[len(cache)] = next(stream).x
        x = cache.pop(b)
        return x[: max(0, min(batch_size, num_samples - b * batch_size))]

    return -(-num_samples // batch_size), batch


def _check_images(x: Tensor, where: str) -> None:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"FID needs images (N, 1 or 3, H, W); {where} gives {tuple(x.shape)}")


def compute_reference_stats(
    data: str | Path | DataSource,
    out_path: str | Path | None,
    features: str = "inception",
    inception_weights: str | Path | None = None,
    resize: str | None = None,
    num_samples: int | None = None,
    split: str = "train",
    feature_weights: str | Path | None = None,
    batch_size: int = 200,
    keep_features: int = KEEP_REF_FEATURES,
    seed: int = 0,
    data_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    accelerator: Any = None,
    extractor: FeatureExtractor | None = None,
) -> dict[str, Any]:
    """Features of a dataset's images (default: every training image) → ``out_path`` (.npz) with
    ``mu``, ``sigma``, ``n``, ``settings`` (JSON) and up to ``keep_features`` random feature
    vectors. Returns the statistics (``mu``, ``sigma``, ``features``, ``n``, ``settings``)."""
    if split not in SPLITS:
        raise ConfigError(f"--split must be {' or '.join(SPLITS)}, got {split!r}")
    if num_samples is not None and num_samples < 2:
        raise ConfigError(f"--num-samples must be at least 2, got {num_samples}")
    if out_path is not None and Path(out_path).suffix != ".npz":  # before the features are computed
        raise ConfigError(f"reference statistics are saved as .npz; got {Path(out_path).name!r}")
    source, label = open_data(data, data_options)
    if getattr(source, "kind", "images") != "images":
        raise DataError(f"FID needs an image dataset; {label} holds {source.kind}")
    acc = _accelerator(accelerator)
    extractor = extractor or build_feature_extractor(features, inception_weights=inception_weights, feature_weights=feature_weights, resize=resize)
    extractor.to(acc.device)
    num_batches, make_batch = _data_batches(source, split, num_samples, batch_size, seed)

    def checked(b: int) -> Tensor:
        x = make_batch(b)
        _check_images(x, label)
        return x

    feats = distributed_features(checked, num_batches, batch_size, extractor, acc, progress, f"reference features ({label})")
    mu, sigma = feature_statistics(feats)
    keep = np.random.RandomState(seed).permutation(len(feats))[: min(keep_features, len(feats))]
    stats = {
        "mu": mu,
        "sigma": sigma,
        "features": feats[np.sort(keep)].numpy().astype(np.float32),
        "n": len(feats),
        "settings": {**extractor.settings(), "data": label, "split": split, "shape": list(source.shape)},
    }
    if out_path is not None and acc.is_main_process:
        save_stats(out_path, stats)
    return stats


def save_stats(path: str | Path, stats: Mapping[str, Any]) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"reference statistics are saved as .npz; got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, mu=stats["mu"], sigma=stats["sigma"], n=np.int64(stats["n"]), features=stats["features"],
             settings=np.array(json.dumps(stats["settings"], sort_keys=True)))  # fmt: skip
    tmp.replace(path)
    return path


def is_stats_file(ref: Any) -> bool:
    """Whether a --ref names a statistics file (.npz from fid-ref), not data: an .npz of images
    (the image-array dataset) or a data spec (``image-array:path=x.npz``) is data."""
    from genvae.core.plugins import get_plugins
    from genvae.plugins.datasets.image_array import holds_images

    if not isinstance(ref, (str, Path)) or not str(ref).endswith(".npz"):
        return False
    spec_name, colon, _ = str(ref).partition(":")
    if colon and spec_name in get_plugins().datasets and not Path(ref).exists():
        return False
    return not (Path(ref).is_file() and holds_images(Path(ref)))


def load_stats(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"reference statistics {path} not found; make them with 'genvae eval fid-ref DATA --out {path.name}'")
    try:
        with np.load(path, allow_pickle=False) as f:
            stats = {"mu": f["mu"], "sigma": f["sigma"], "n": int(f["n"]) if "n" in f else 0,
                     "features": f["features"] if "features" in f else None,
                     "settings": json.loads(str(f["settings"])) if "settings" in f else {}}  # fmt: skip
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path} is not a reference statistics file (needs mu and sigma): {numpy_read_error(exc)}") from None
    return stats


def stats_distance(a: str | Path, b: str | Path, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE) -> dict[str, Any]:
    """FID between two statistics files of the same features (and KID when both hold their
    features): e.g. the test split against the train split, the floor a model's FID has beside
    it (two finite samples of one distribution do not score 0)."""
    first, second = load_stats(a), load_stats(b)
    check_compatible(first["settings"], second["settings"], str(a))
    if first["mu"].shape != second["mu"].shape:
        raise ConfigError(f"{a} holds {first['mu'].shape[0]}-d statistics and {b} {second['mu'].shape[0]}-d: not of the same features")
    result: dict[str, Any] = {"fid": frechet_distance(first["mu"], first["sigma"], second["mu"], second["sigma"]),
                              "a": str(a), "a_n": first["n"], "b": str(b), "b_n": second["n"],
                              "features": first["settings"].get("features", "unknown")}  # fmt: skip
    if first["features"] is not None and second["features"] is not None:
        mean, std, size = kernel_inception_distance(first["features"], second["features"], kid_subsets, kid_subset_size)
        result.update(kid_mean=mean, kid_std=std, kid_subset_size=size, kid_subsets=kid_subsets)
    else:
        result["note"] = "a file holds no features: KID skipped"
    if Path(a).resolve() == Path(b).resolve():
        result["note"] = "the same file twice: FID 0 by construction, and KID's unbiased estimate of a set against itself is not 0 (nor meaningful)"
    return result


COMPARED_SETTINGS = ("features", "dim", "resize", "quantize", "input_scaling", "seed", "weights_sha256")


def check_compatible(ref_settings: Mapping[str, Any], settings: Mapping[str, Any], ref_label: str) -> None:
    """Reference and generated features must come from the same extractor with the same settings."""
    if not ref_settings:
        return  # a foreign .npz (e.g. pytorch-fid's): mu / sigma only, nothing to compare
    diffs = [f"{k}: {ref_settings.get(k)!r} vs {settings.get(k)!r}" for k in COMPARED_SETTINGS
             if k in ref_settings or k in settings if ref_settings.get(k) != settings.get(k)]  # fmt: skip
    if diffs:
        made_with = f"pass the weights it was made with (--feature-weights={ref_settings['weights_path']}) or " if "weights_path" in ref_settings else ""
        raise ConfigError(f"reference {ref_label} was computed with other feature settings ({'; '.join(diffs)}); "
                          f"{made_with}recompute it with 'genvae eval fid-ref'")  # fmt: skip


# --------------------------------------------------------------------------------------------
# FID of a run
# --------------------------------------------------------------------------------------------


def _check_ref_shape(ref_shape: Any, run_shape: tuple[int, ...], ref_label: str) -> None:
    if tuple(ref_shape) != tuple(run_shape):
        raise DataError(f"reference {ref_label} holds images of shape {tuple(ref_shape)} but the run's are {tuple(run_shape)}; "
                        "use a reference of the run's dataset (a folder: folder:path=DIR,resolution=N)")  # fmt: skip


def _warn_rank_deficient(what: str, n: int, dim: int) -> None:
    if 0 < n < 2 * dim:
        warnings.warn(f"{what} has {n} images, fewer than 2 × the {dim} feature dimensions: its covariance is rank-deficient "
                      "and the FID unreliable; use more images", stacklevel=3)  # fmt: skip


def generated_batch_fn(decoder: nn.Module, z_dim: int, num_classes: int, num_samples: int, batch_size: int, seed: int, device: Any) -> Callable[[int], Tensor]:
    """Batch b → D(z) with z ~ N(0, I) from a generator seeded by (seed, b): the samples do not
    depend on how batches are spread over processes. Conditional models cycle through the classes."""

    def make(b: int) -> Tensor:
        n = min(batch_size, num_samples - b * batch_size)
        z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + b)).to(device)
        y = (torch.arange(b * batch_size, b * batch_size + n) % num_classes).to(device) if num_classes else None
        return decoder(z, y).clamp(0.0, 1.0)

    return make


def evaluate_fid(
    run: Any,
    ref: str | Path | DataSource,
    num_samples: int = NUM_SAMPLES,
    features: str | None = None,
    inception_weights: str | Path | None = None,
    resize: str | None = None,
    batch_size: int = 200,
    seed: int = 0,
    feature_weights: str | Path | None = None,
    kid: bool = True,
    pr: bool = True,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int = KID_SUBSET_SIZE,
    pr_k: int = PR_NEIGHBORHOOD,
    ref_num_samples: int | None = None,
    progress: bool = True,
    accelerator: Any = None,
    extractor: FeatureExtractor | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """FID (and KID, precision / recall) of ``num_samples`` prior samples of a ``LoadedRun``.

    ``ref`` is a statistics file (.npz from :func:`compute_reference_stats`) or data (a dataset
    name, ``name:key=value``, a folder): then its training split's statistics are computed and
    cached as ``RUN/metrics/fid-ref-<data>-<features>.npz`` for the next call. ``features``
    defaults to the reference file's extractor (else ``inception``). Appends the result to
    ``RUN/metrics/fid.jsonl`` (main process) and returns it.
    """
    if num_samples < 2:
        raise ConfigError(f"--num-samples must be at least 2, got {num_samples}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    shape = tuple(run.data.shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError(f"run {run.path} is not an image model: it was trained on {run.config.data['name']} (samples of shape {shape}); "
                        "FID needs a run trained on images (use 'genvae eval toy2d' for 2-D runs)")  # fmt: skip
    acc = _accelerator(accelerator)
    start = time.perf_counter()
    run_path = Path(run.path)
    ref_is_file = is_stats_file(ref)
    ref_stats = load_stats(ref) if ref_is_file else None
    if ref_stats is None:
        source, label = open_data(ref, at_run_size(ref, shape), stats_ok=True)
        _check_ref_shape(source.shape, shape, label)
    elif "shape" in ref_stats["settings"]:
        _check_ref_shape(ref_stats["settings"]["shape"], shape, str(ref))
    name = features or (ref_stats["settings"].get("features") if ref_stats else None) or "inception"
    if feature_weights is None and ref_stats and name == ref_stats["settings"].get("features"):
        feature_weights = ref_stats["settings"].get("weights_path")  # the reference's own classifier (its SHA-256 is checked)
    if extractor is None:
        extractor_options: dict[str, Any] = {"inception_weights": inception_weights, "feature_weights": feature_weights,
                                             "resize": resize or (ref_stats or {}).get("settings", {}).get("resize")}  # fmt: skip
        if name != "inception":
            extractor_options.pop("resize")
        if ref_stats and "seed" in ref_stats["settings"]:
            extractor_options["seed"] = ref_stats["settings"]["seed"]
        extractor = build_feature_extractor(name, **extractor_options)
    extractor.to(acc.device)
    settings = extractor.settings()

    if ref_stats is None:
        if ref_num_samples is None and not (hasattr(source, "get") and hasattr(source, "split_size")):
            ref_num_samples = num_samples  # a dataset that only streams: as many real images as generated ones
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[-60:]
        cache = run_path / "metrics" / f"fid-ref-{safe}-{name}.npz"
        if cache.is_file():
            ref_stats = load_stats(cache)
            same = ref_stats["settings"].get("data") == label and ref_num_samples in (None, ref_stats["n"])
            if not same:
                ref_stats = None
            else:
                try:
                    check_compatible(ref_stats["settings"], settings, str(cache))
                except ConfigError:
                    ref_stats = None
        if ref_stats is None:
            ref_stats = compute_reference_stats(source, cache, num_samples=ref_num_samples, batch_size=batch_size, progress=progress,
                                                accelerator=acc, extractor=extractor, seed=seed)  # fmt: skip
            acc.wait_for_everyone()
        ref_label = str(cache)
    else:
        ref_label = str(ref)
    check_compatible(ref_stats["settings"], settings, ref_label)
    if ref_stats["mu"].shape != (extractor.dim,):
        raise ConfigError(f"reference {ref_label} holds {ref_stats['mu'].shape[0]}-d statistics, but {name} gives {extractor.dim}-d features")

    _warn_rank_deficient(f"reference {ref_label}", ref_stats["n"], extractor.dim)
    _warn_rank_deficient("the generated set", num_samples, extractor.dim)

    decoder = copy.deepcopy(run.decoder).eval().to(acc.device)  # a copy: the caller's run stays where it is
    z_dim = sum(run.encoder.latent_groups.values())
    num_classes = num_classes_of(decoder)
    make = generated_batch_fn(decoder, z_dim, num_classes, num_samples, batch_size, seed, acc.device)
    gen = distributed_features(make, -(-num_samples // batch_size), batch_size, extractor, acc, progress, "generated features")
    mu, sigma = feature_statistics(gen)
    result: dict[str, Any] = {"fid": frechet_distance(mu, sigma, ref_stats["mu"], ref_stats["sigma"])}
    ref_features = ref_stats.get("features")
    if (kid or pr) and ref_features is None:
        result["note"] = "reference file holds no features: KID and precision / recall skipped"
    if kid and ref_features is not None:
        mean, std, size = kernel_inception_distance(gen.numpy(), ref_features, kid_subsets, kid_subset_size)
        result.update(kid_mean=mean, kid_std=std, kid_subset_size=size, kid_subsets=kid_subsets)
    if pr and ref_features is not None:
        n = min(len(gen), len(ref_features))
        result["precision"], result["recall"] = precision_recall(gen[:n], ref_features[:n], k=pr_k)
        result.update(pr_k=pr_k, pr_samples=n)
    comparable = (name == "inception" and settings.get("weights_verified") != "unverified" and num_samples >= NUM_SAMPLES
                  and settings.get("resize") == "tf1-bilinear")  # fmt: skip
    result.update(
        run=str(run_path),
        step=getattr(run, "step", None),  # the training step of the weights scored
        objective=run.config.objective["name"],
        data=run.config.data["name"],
        num_samples=num_samples,
        ref=ref_label,
        ref_n=ref_stats["n"],
        ref_data=ref_stats["settings"].get("data", ""),
        seed=seed,
        batch_size=batch_size,
        processes=acc.num_processes,
        settings=settings,
        comparable_to_published=comparable,
        seconds=round(time.perf_counter() - start, 2),
        time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if write and acc.is_main_process:
        append_metrics_record(run_path, RESULTS_FILE, result)
    return result


def evaluate(run: Any, seed: int = 0, ref: str | None = None, **options: Any) -> dict[str, Any]:
    """The registered metric: ``genvae eval fid RUN --option ref=STATS.npz|DATA [--option num_samples=N]``."""
    if ref is None:
        raise ConfigError("the fid metric needs a reference: ref=STATS.npz (from 'genvae eval fid-ref') or a dataset name")
    return evaluate_fid(run, ref, seed=seed, **options)


@hookimpl
def genvae_register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register("fid", Metric(evaluate=evaluate, distributed=True,
                           description="FID / KID / precision-recall of prior samples against reference statistics (paper Sec. 6.3)"))  # fmt: skip
