"""Benchmarks that train many runs can be run again after a crash or Ctrl-C: each run directory
that holds a checkpoint of the same settings continues from it, and a finished one is only
evaluated again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping

from genvae.core.checkpoint import find_checkpoint
from genvae.errors import RunDirError

BENCH_CHECKPOINT_EVERY = 1000
# Train settings that do not change what is learned; a bench run may continue under other values.
_BOOKKEEPING = ("checkpoint_every", "figures_every", "log_every")


def continue_or_start(run_dir: Path, config: dict[str, Any]) -> bool:
    """Whether the bench continues ``run_dir`` (so a rerun after a crash or Ctrl-C loses at most
    ``BENCH_CHECKPOINT_EVERY`` steps, and a finished run is evaluated, not retrained).

    True when it holds a checkpoint of the same settings; False for a fresh start, after removing
    a directory that never reached a checkpoint (nothing trained is lost). Other settings: error."""
    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        return False

    def essential(c: Mapping[str, Any]) -> dict[str, Any]:
        flat = {f"{g}.{k}": v for g, group in c.items() if isinstance(group, Mapping) for k, v in group.items()}
        return json.loads(json.dumps({k: v for k, v in flat.items() if k.removeprefix("train.") not in _BOOKKEEPING}))

    saved, wanted = essential(json.loads(saved_path.read_text())), essential(config)
    differ = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if differ:
        raise RunDirError(f"{run_dir} holds a run with other settings ({', '.join(differ)} differ); "
                          f"choose another --out or remove that directory")  # fmt: skip
    if find_checkpoint(run_dir) is None:
        shutil.rmtree(run_dir)
        return False
    return True
