"""The Python API: what ``genvae train`` does, for notebooks and scripts, with the same settings,
the same precedence and the same run directories. ``import genvae`` exposes ``genvae.train`` and
``genvae.load_run``::

    run = genvae.train("runs/ring", objective="soft-intro", data="8gaussians", steps=3000,
                       settings={"objective.beta_neg": 0.5})
    loaded = genvae.load_run(run.run_dir)
    x = loaded.models.decode(torch.randn(16, loaded.models.z_dim))
"""

from __future__ import annotations

import contextlib
import random
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from genvae.core.config import SECTIONS, merge_user
from genvae.core.health import GameStoppedWarning, run_warning
from genvae.core.plugins import get_plugins
from genvae.core.run import (
    GIVEN_DATA,
    PATH_OPTIONS,
    LoadedRun,
    absolute_data_paths,
    given_data_here,
    load_run,
    model_input,
    read_run_config,
    require_installed,
    require_run_dir,
    resolve,
)
from genvae.core.trainer import TrainResult, check_new_run_dir
from genvae.core.trainer import train as train_run
from genvae.errors import ConfigError, RunDirError, python_api, worded
from genvae.plugins.datasets.image_array import as_uint8_images

# train settings that a resumed run may change: they do not alter what is trained
RESUMABLE_RATES = ("lr", "lr_encoder", "lr_decoder")  # e.g. lowered after a non-finite loss; logged per step
RESUMABLE_CHANGES = ("steps", "log_every", "checkpoint_every", "figures_every", "compile", "log_with", "eval_every", "eval", "eval_options")


def default_run_dir(objective: str, arch: str, data: str) -> Path:
    """``runs/<objective>-<arch>-<data>-<date>-<time>``, made now (empty) so that runs started
    in the same second (a seed sweep in parallel) each get their own: ``-2``, ``-3``, ... after it."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{objective}-{arch}-{data}-{stamp}"
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RunDirError(f"{base}-*: a thousand runs started this second; give --run-dir")


def remove_if_empty(path: str | Path) -> None:
    """Remove a directory made for a run that never started (nothing in it)."""
    with contextlib.suppress(OSError):
        Path(path).rmdir()  # fails unless empty


def user_settings(
    config_file: str | Path | None, overrides: Sequence[str], flags: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False
) -> dict[str, dict[str, Any]]:
    """The settings to resolve: for a new run the user's (file < ``--set`` strings < ``flags``,
    dotted keys to values, None meaning unset); for a resumed run its saved config, where only
    :data:`RESUMABLE_CHANGES` may differ."""
    for dotted in flags:
        if dotted.split(".", 1)[0] not in SECTIONS or "." not in dotted:
            raise ConfigError(f"setting {dotted!r} must be SECTION.KEY with SECTION one of {', '.join(SECTIONS)}")
    changes = merge_user(config_file, list(overrides), flags)
    name = str(changes.get("data", {}).get("name", ""))
    if not resume:
        if name in get_plugins().datasets and Path(name).is_dir():
            warnings.warn(worded(f"--data={name} is the dataset {name!r}, not the folder ./{name} here; to train on the folder, "
                                 f"give --data=./{name}"), stacklevel=2)  # fmt: skip
        return changes
    if run_dir is None:
        raise ConfigError("--resume needs --run-dir RUN, the run to continue")
    require_run_dir(Path(run_dir))
    saved = read_run_config(Path(run_dir) / "config.json").to_dict()
    saved["data"] = given_data_here(saved["data"], Path(run_dir))
    plugins = get_plugins()
    for section, registry in (("objective", plugins.objectives), ("arch", plugins.architectures), ("data", plugins.datasets)):
        require_installed(registry, saved[section]["name"], "trained with" if section != "data" else "trained on")
    if "path" in saved["data"] and name and name != saved["data"]["name"] and Path(name).expanduser().exists():
        data = {k: v for k, v in changes["data"].items() if k != "name"}  # --data DIR (or FILE) of a folder (points) run: where it lies now
        changes["data"] = {**data, "path": data.get("path", name)}
    changes["data"] = absolute_data_paths(changes.get("data", {}))  # as saved
    for section, values in changes.items():
        for key, value in values.items():
            if (section == "train" and key in RESUMABLE_CHANGES) or (section == "data" and key in PATH_OPTIONS):
                if section == "data" and saved[section].get(key) not in (None, value):
                    warnings.warn(worded(f"--resume: data.{key} changes from {saved[section][key]} to {value}; the run continues on it as the same "
                                  "data, moved (other data would change what it learns)"), stacklevel=2)  # fmt: skip
                saved[section][key] = value  # data.path / data.root: the same data, moved
            elif section == "optim" and key in RESUMABLE_RATES:
                if saved[section].get(key) != value:
                    warnings.warn(worded(f"--resume: optim.{key} changes from {saved[section].get(key)} to {value} from the checkpoint on "
                                  "(log.jsonl records each step's lr)"), stacklevel=2)  # fmt: skip
                saved[section][key] = value
            elif saved[section].get(key) != value:
                raise ConfigError(
                    f"--resume continues the saved config; {section}.{key} cannot change (only train.steps, the intervals, "
                    "train.compile, train.log_with, the evaluations (train.eval*), the learning rates (optim.lr, optim.lr_encoder, "
                    "optim.lr_decoder) and where the data lies (data.path, data.root) can)"
                )
    return saved


@contextlib.contextmanager
def callers_random_state() -> Iterator[None]:
    """Training seeds Python's, NumPy's and torch's global generators with the run's seed; the
    caller's draws after it go on from where they were, as if it had not run."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def save_given_data(data: Any, run_dir: Path) -> dict[str, Any]:
    """Save an in-memory dataset (an array of points or images, or (images, labels)) as
    ``RUN/data.npz`` so that the run can be resumed and evaluated like any other; the data
    settings that read it back."""
    images, labels = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    arrays = {}
    for name, value in (("x", images), ("y", labels)):
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            value = (value.float() if value.is_floating_point() and value.dtype != torch.float64 else value).numpy()  # bf16 has no NumPy type
        if not isinstance(value, np.ndarray):
            raise ConfigError(f"data must be a dataset name, a path, or an array (NumPy or torch) of points or images, "
                              f"or (images, labels); got {type(value).__name__}")  # fmt: skip
        arrays[name] = value
    if arrays["x"].size == 0:
        raise ConfigError(f"data holds an empty array (shape {arrays['x'].shape}); give at least two samples")
    if arrays["x"].ndim not in (2, 3, 4):
        raise ConfigError(f"data holds an array of shape {arrays['x'].shape}; give points as (N, D), images as (N, H, W), (N, C, H, W) or (N, H, W, C)")
    if "y" in arrays and arrays["x"].ndim == 2:
        raise ConfigError("labels are taken with images, not with points; give data=points alone")
    if arrays["x"].ndim in (3, 4):
        as_uint8_images(arrays["x"], "data")  # its problems named as given, not as RUN/data.npz
    check_new_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (GIVEN_DATA + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(run_dir / GIVEN_DATA)
    return {"data.name": str(run_dir / GIVEN_DATA), "data.key": "x", **({"data.labels": "y"} if "y" in arrays else {})}


@python_api
def train(
    run_dir: str | Path | None = None,
    *,
    objective: str | None = None,
    arch: str | None = None,
    data: Any = None,
    steps: int | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    config: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train a run (``resume=True``: continue the one in ``run_dir``), as ``genvae train``.

    ``data`` is a dataset name or path as ``--data`` takes it, or data in memory: an array (NumPy
    or torch) of points (N, D) or images ((N, H, W), (N, C, H, W) or (N, H, W, C); uint8, or floats
    in [0, 1]), or a tuple (images, labels). That array is saved as ``RUN/data.npz`` first, so the
    run resumes and evaluates like any other.

    ``settings`` maps dotted keys to values, like ``--set``: ``{"objective.beta_neg": 0.5,
    "arch.z_dim": 8}``; the named arguments win over it, as the CLI's flags win over ``--set``.
    Returns the :class:`~genvae.core.trainer.TrainResult` (run directory, step, last logged values,
    figures written, seconds). When the introspective game has stopped by the end, it warns with
    :class:`~genvae.core.health.GameStoppedWarning`, as ``genvae train`` prints it. The global
    random generators (Python's, NumPy's, torch's) are left as they were before the call."""
    given = {}
    if data is not None and not isinstance(data, (str, Path)):
        if resume:
            raise ConfigError(f"resume=True continues on the run's saved data ({GIVEN_DATA} in its directory); leave data out")
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir(objective or "soft-intro", arch or "auto", "array")
        given, data = save_given_data(data, run_dir), None
    named = {"objective.name": objective, "arch.name": arch, "data.name": data, "train.steps": steps, "train.seed": seed, "train.batch_size": batch_size}
    flags = {**dict(settings or {}), **given, **{k: v for k, v in named.items() if v is not None}}
    made = run_dir is None
    try:
        cfg, source = resolve(user_settings(config, [], flags, run_dir, resume), advice=not resume)
        if made:
            run_dir = default_run_dir(cfg.objective["name"], cfg.arch["name"], cfg.data["name"])
        with callers_random_state():
            result = train_run(cfg, source, Path(run_dir), resume=resume, progress=progress)
    finally:
        if run_dir is not None and (made or given) and not (Path(run_dir) / "config.json").is_file():  # the run never started
            if given:
                (Path(run_dir) / GIVEN_DATA).unlink(missing_ok=True)
            remove_if_empty(run_dir)  # made for this run (or emptied of its data): gone again
    if result.steps_run == 0:  # the CLI prints it
        warnings.warn(worded(f"already at step {result.step} of train.steps={cfg.train.steps}; nothing to train: "
                             f"give --steps N with N > {result.step}"), stacklevel=3)  # fmt: skip
    if warning := run_warning(run_dir, cfg.objective):
        warnings.warn(warning, GameStoppedWarning, stacklevel=3)  # the caller's line (2: python_api's wrapper)
    return result


@python_api
def log_likelihood(
    run: str | Path | LoadedRun, x: Any, y: Any = None, *, samples: int = 5, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Per-sample scores of a batch ``x`` (a tensor or NumPy array, as the run's data: images as
    floats in [0, 1] or uint8) under a run, in nats: ``elbo`` and ``iwae``, the importance-weighted bound
    log (1/M) Σ p(x|z_i) p(z_i) / q(z_i|x) of M = ``samples`` draws z_i ~ q(z|x) (the paper's OOD
    scores use M = 5; ``genvae eval likelihood`` 100), both from the same draws, with the decoder
    density the run was trained with. ``y``: class labels for a class-conditional run."""
    from genvae.plugins.metrics.ood import likelihood_scores

    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    objective = loaded.config.objective
    models = loaded.models
    x = model_input(x, models.sample_shape).float()
    y = None if y is None else torch.as_tensor(y)
    with torch.no_grad():
        return likelihood_scores(models.encode, models.decode, x, y, samples, objective.get("recon_loss", "mse"),
                                 float(objective.get("beta_rec", 1.0)), torch.Generator().manual_seed(seed))  # fmt: skip


@python_api
def evaluate(run: str | Path | LoadedRun, metric: str, *, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Run the metric plugin ``metric`` (``toy2d``, ``fid``, ``ood``, ``likelihood``, ...) on a run
    directory or a :func:`~genvae.core.run.load_run` result, as ``genvae eval metric NAME RUN
    --option KEY=VALUE``: ``options`` go to the metric (checked against its parameters), the
    result is returned and recorded as the command records it (``RUN/metrics/<metric>.jsonl``).

    ``genvae.evaluate("runs/fm", "ood", out="mnist", score="iwae")``"""
    from genvae.core.evaluation import call_metric

    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    return call_metric(metric, get_plugins().metrics.get(metric), loaded, seed, options)
