"""Checkpoints: exported components (config.json + model.safetensors) and resumable state.

Run directory layout::

    runs/<name>/
      config.json               the resolved run config
      encoder/                  exported encoder: config.json + model.safetensors
      decoder/                  exported decoder
      checkpoint/               resumable state: encoder/, decoder/, accelerate/, trainer.json
      log.jsonl                 logged losses
      *.png                     figures (levels/<size>px/: each finished level of a growing model)
      evals.jsonl, evals.png    evaluations during training (train.eval_every)
      metrics/                  evaluations: <metric>.jsonl (one line per call) and their figures
      stopped.json              why the last training call stopped early (Ctrl-C, non-finite loss)
      train.lock                held while a process trains the run
      data.npz                  the array genvae.train(data=array) was given
      trackers/                 experiment trackers' files (train.log_with)

Every file is written to a temporary name and renamed into place, and a checkpoint directory is
swapped in with renames, so a crash mid-write never leaves a half-written checkpoint behind. A
checkpoint's files are flushed to disk (fsync) before its ``trainer.json``, the mark of a complete
checkpoint, is written, and the renames before the previous checkpoint is removed: a power cut
leaves a complete checkpoint too, not one whose files were still in the page cache.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import stat
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genvae.core.config import read_json
from genvae.core.interfaces import Component
from genvae.errors import RunDirError

if TYPE_CHECKING:
    from accelerate import Accelerator

WEIGHTS = "model.safetensors"
COMPONENT_CONFIG = "config.json"
CHECKPOINT_DIR = "checkpoint"
RESTORE = "restore it from a backup, or use an earlier copy of the run, or start a new run"


@contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside ``path`` (an open descriptor and its name), renamed over
    ``path`` when the block succeeds and removed otherwise. It ends with the mode open() gives new
    files, 0666 less the umask (mkstemp, and safetensors' save_file, make them 0600: unreadable to
    colleagues)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    try:
        yield fd, tmp
        os.chmod(tmp, mode)  # in case the writer replaced the file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries (the renames in it), to disk. A directory that
    cannot be opened (Windows) is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """:func:`fsync_path` every file below ``directory`` and every directory down from it."""
    for root, _, files in os.walk(directory):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))


def atomic_write_text(path: Path, text: str) -> None:
    with _replacing(path) as (fd, _), os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    with _replacing(path) as (fd, tmp):
        os.close(fd)
        save_file(tensors, tmp, metadata=metadata)
        fsync_path(tmp)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file flushed to disk and renamed over ``path``, the
    rename flushed too: a crash or a power cut mid-write keeps the previous file."""
    with _replacing(path) as (fd, tmp):
        os.close(fd)
        torch.save(obj, tmp)
        fsync_path(tmp)
    fsync_path(Path(path).parent)


def append_metrics_record(run_path: str | Path, file_name: str, record: dict[str, Any]) -> Path:
    """Append one evaluation's ``record`` as a JSON line to ``RUN/metrics/<file_name>``."""
    out = Path(run_path) / "metrics" / file_name
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    return out


def export_component(module: Component, directory: Path, role: str, plugin: str, step: int | None = None) -> None:
    """Write ``config.json`` (constructor arguments + plugin name, and the training ``step`` of
    these weights when given) and ``model.safetensors``."""
    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    atomic_save_file(state, directory / WEIGHTS, metadata={"format": "pt", "role": role})
    config = {"role": role, "architecture": plugin, "class": type(module).__name__, "config": module.config}
    if step is not None:
        config["step"] = step
    atomic_write_text(directory / COMPONENT_CONFIG, json.dumps(config, indent=2) + "\n")


def damaged(path: Path, problem: str) -> RunDirError:
    """The error for a run file that cannot be read: which, what is wrong, how to repair it.
    An exported component is written twice (RUN/<part>/ and RUN/checkpoint/<part>/, the same
    files), so the other copy can replace a damaged one."""
    twin = _twin(Path(path))
    fix = f"copy {twin} over it (the same file, saved with the last checkpoint), or {RESTORE}" if twin else RESTORE
    return RunDirError(f"{path} {problem}; {fix}")


def _twin(path: Path) -> Path | None:
    if path.name not in (WEIGHTS, COMPONENT_CONFIG):
        return None
    part = path.parent
    if part.parent.name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):
        twin = part.parent.parent / part.name / path.name
    else:
        twin = part.parent / CHECKPOINT_DIR / part.name / path.name
    return twin if twin.is_file() else None


def read_component_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / COMPONENT_CONFIG
    if not path.is_file():
        twin_dir = Path(directory).parent / CHECKPOINT_DIR / Path(directory).name
        if (twin_dir / COMPONENT_CONFIG).is_file():  # a run's export, deleted: the checkpoint holds the same one
            raise RunDirError(f"{directory} is missing or incomplete; copy {twin_dir} (the same export, saved with the last checkpoint) "
                              f"to {directory}, or {RESTORE}")  # fmt: skip
        raise RunDirError(f"{path} is missing: {directory} is not an exported genvae component")
    return read_json(path)


def load_weights(module: torch.nn.Module, directory: Path) -> None:
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        if _twin(path):  # deleted from a run
            raise damaged(path, "is missing")
        raise RunDirError(f"{path} is missing: the run has no exported weights yet")
    try:
        state = load_file(str(path))
    except SafetensorError as exc:
        raise damaged(path, "is unreadable (truncated or not a safetensors file)") from exc
    module.load_state_dict(state)


def load_state(accelerator: "Accelerator", state_dir: Path, custom_objects: int) -> None:
    """``accelerator.load_state``; a missing or damaged file of the state is a RunDirError.
    ``custom_objects``: how many objects were registered for checkpointing (custom_checkpoint_<i>.pkl).

    Accelerate skips an unreadable random-state file with a log line only, and the run would go on
    with other random numbers than the uninterrupted run: that file is checked first."""
    state_dir = Path(state_dir)
    rng = state_dir / f"random_states_{accelerator.process_index}.pkl"
    if state_dir.is_dir() and not _complete_zip(rng):
        raise _damaged_state(rng)
    try:
        accelerator.load_state(str(state_dir))
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        path = _damaged_state_file(state_dir, exc, custom_objects)
        if path is None:
            raise  # every file is intact: not damage
        raise _damaged_state(path) from exc


def _damaged_state(path: Path) -> RunDirError:
    return damaged(path, "is unreadable (truncated or not a PyTorch file)" if path.exists() else "is missing")


def _damaged_state_file(state_dir: Path, exc: Exception, custom_objects: int) -> Path | None:
    """The missing or unreadable file (not a complete zip archive, as torch.save writes them)
    that made loading an Accelerate state fail; None when there is none."""
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return Path(exc.filename)
    if not state_dir.is_dir():
        return state_dir
    expected = [state_dir / f"custom_checkpoint_{i}.pkl" for i in range(custom_objects)]
    missing = [p for p in expected if not p.is_file()]
    unreadable = [p for p in sorted(state_dir.iterdir()) if p.suffix in (".bin", ".pkl") and not _complete_zip(p)]
    return next(iter(missing + unreadable), None)


def _complete_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def swap_in_directory(tmp_dir: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` by ``tmp_dir`` with renames: at every instant one complete copy exists
    (``final_dir`` or ``final_dir.old``). ``tmp_dir``'s files must be on disk already
    (:func:`fsync_tree`); the renames are flushed before ``old`` is removed."""
    old = final_dir.with_name(final_dir.name + ".old")
    if final_dir.exists():  # else an earlier crash left only ``old``: it stays until tmp is in place
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    fsync_path(final_dir.parent)
    if old.exists():
        shutil.rmtree(old)


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run: ``checkpoint``, else after a crash mid-swap a
    ``checkpoint.tmp`` that was finished (its trainer.json is written last), else ``checkpoint.old``."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".tmp", CHECKPOINT_DIR + ".old"):
        candidate = Path(run_dir) / name
        if (candidate / "trainer.json").is_file():
            return candidate
    return None


def trained_without_checkpoint(run_dir: Path, checkpoint_every: int) -> int | None:
    """For a run with no complete checkpoint: the step it shows it trained to although a checkpoint
    was written (its exports, written only with a checkpoint, or a log past the first checkpoint's
    step), so that the checkpoint was lost and starting again would overwrite that work; None
    for a run stopped before its first checkpoint."""
    run_dir = Path(run_dir)
    shown = []
    if (run_dir / "encoder" / COMPONENT_CONFIG).is_file():
        try:
            shown.append(int(read_component_config(run_dir / "encoder").get("step") or 0))
        except (RunDirError, AttributeError):
            shown.append(0)  # damaged, but there: written with a checkpoint
    lines = (run_dir / "log.jsonl").read_text().splitlines() if (run_dir / "log.jsonl").is_file() else []
    for line in reversed(lines):
        try:
            last = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if checkpoint_every and last > checkpoint_every:  # training went on after the first checkpoint was written
            shown.append(last)
        break
    return max(shown) if shown else None


def checkpoint_step(checkpoint: Path) -> int:
    """The training step a checkpoint (from :func:`find_checkpoint`) was saved at."""
    return int(read_json(Path(checkpoint) / "trainer.json")["step"])
