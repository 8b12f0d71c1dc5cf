"""Checkpoints: exported components (config.json + model.safetensors) and resumable state.

Run directory layout::

    runs/<name>/
      config.json               the resolved run config
      encoder/                  exported encoder: config.json + model.safetensors
      decoder/                  exported decoder
      checkpoint/               resumable state: encoder/, decoder/, accelerate/, trainer.json
      log.jsonl                 logged losses
      *.png                     figures

Every file is written to a temporary name and renamed into place, and a checkpoint directory is
swapped in with renames, so a crash mid-write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from genvae.core.interfaces import Component
from genvae.errors import RunDirError

WEIGHTS = "model.safetensors"
COMPONENT_CONFIG = "config.json"
CHECKPOINT_DIR = "checkpoint"


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_component(module: Component, directory: Path, role: str, plugin: str) -> None:
    """Write ``config.json`` (constructor arguments + plugin name) and ``model.safetensors``."""
    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    atomic_save_file(state, directory / WEIGHTS, metadata={"format": "pt", "role": role})
    config = {"role": role, "architecture": plugin, "class": type(module).__name__, "config": module.config}
    atomic_write_text(directory / COMPONENT_CONFIG, json.dumps(config, indent=2) + "\n")


def read_component_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / COMPONENT_CONFIG
    if not path.is_file():
        raise RunDirError(f"{path} is missing: {directory} is not an exported genvae component")
    return json.loads(path.read_text())


def load_weights(module: torch.nn.Module, directory: Path) -> None:
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise RunDirError(f"{path} is missing: the run has no exported weights yet")
    module.load_state_dict(load_file(str(path)))


def swap_in_directory(tmp_dir: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` by ``tmp_dir`` with renames: at every instant one complete copy exists
    (``final_dir`` or ``final_dir.old``)."""
    old = final_dir.with_name(final_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


def find_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint of a run (a leftover ``checkpoint.old`` counts after a crash)."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):
        candidate = Path(run_dir) / name
        if (candidate / "trainer.json").is_file():
            return candidate
    return None
