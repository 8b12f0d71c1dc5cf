"""Experiment trackers (TensorBoard, Weights & Biases, MLflow, ...) through Accelerate.

``train.log_with = ["tensorboard"]`` (or ``--log-with tensorboard``) sends every log.jsonl record
to each tracker as scalars, and the run's figures (samples, reconstructions, density, losses) to
TensorBoard as images. log.jsonl stays the run's own record; trackers are a view of it. Local
trackers write under RUN/trackers, so ``tensorboard --logdir runs`` shows every run by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from genvae.errors import ConfigError

TRACKER_DIR = "trackers"
PROJECT = "genvae"


def known_trackers() -> list[str]:
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def check_trackers(names: Iterable[str]) -> None:
    """Raise a one-line ConfigError for a tracker Accelerate does not know or cannot import
    (Accelerate itself would drop an uninstalled one silently)."""
    from accelerate.tracking import get_available_trackers

    known = known_trackers()
    available = {str(t.value) if hasattr(t, "value") else str(t) for t in get_available_trackers()}
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown tracker {name!r} in train.log_with; available: {', '.join(known)}")
        if name not in available:
            raise ConfigError(f"train.log_with = {name!r} needs its package: pip install {name}")


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 2e-4}}`` -> ``{"optim.lr": 2e-4}``, lists and dicts as text (what
    TensorBoard's hyperparameter table accepts)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not prefix:
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def start_trackers(accelerator: Any, config: Mapping[str, Any], run_dir: Path, step: int) -> None:
    """Open the trackers of ``accelerator`` (built with ``log_with``) for this run, which starts
    (or resumes) at ``step``. TensorBoard then drops what an earlier, killed process logged
    after that step (SummaryWriter's ``purge_step``), as log.jsonl does."""
    init_kwargs = {"wandb": {"name": run_dir.name}, "tensorboard": {"purge_step": step + 1 if step else None}}
    accelerator.init_trackers(PROJECT, config=flat_config(config), init_kwargs=init_kwargs)


def log_figures(accelerator: Any, paths: Iterable[Path], step: int) -> None:
    """The run's PNG figures as TensorBoard images (other trackers get the scalars only)."""
    from PIL import Image

    for tracker in accelerator.trackers:
        if tracker.name != "tensorboard":
            continue
        for path in paths:
            if Path(path).suffix == ".png":
                image = np.asarray(Image.open(path).convert("RGB"))
                tracker.writer.add_image(Path(path).stem, image, global_step=step, dataformats="HWC")
        tracker.writer.flush()
