"""One training process per run directory.

Two processes training the same run would interleave their records in ``log.jsonl`` and
overwrite each other's checkpoints (easy to do: the resume command typed again in a second
terminal, a job scheduler restarting a job that still runs). The trainer therefore holds an
advisory lock (``fcntl.flock``) on ``RUN/train.lock`` while it trains. The kernel drops the lock
when the process ends, however it ends, so a crash or a kill never leaves a stale lock behind.
The file itself stays (removing it would let a third process lock a new file while a second
still holds the old one); it holds the pid and host of the last trainer, for the error message.
The one exception: a new run that stops at its first batch with a user error removes its
config.json and this file while still holding the lock, and ends without training
(``Trainer._forget_unstarted_run``).
Where ``fcntl`` or file locking is unavailable (Windows, some network file systems) nothing is
locked.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO

from genvae.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "train.lock"


def being_trained(run_dir: str | Path, holder: str) -> RunDirError:
    """The error for training a run that another process trains."""
    return RunDirError(f"{run_dir} is being trained by {holder}; wait for it to finish or stop it "
                       "(Ctrl-C saves a checkpoint) before training this run again, or choose another --run-dir")  # fmt: skip


def training_process(run_dir: str | Path) -> str | None:
    """Who trains ``run_dir`` now ("pid N on HOST"), or None when no process holds its lock."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return None
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # refused while a trainer holds its exclusive lock
            except BlockingIOError:
                return f.read().strip() or "another process"
            return None  # closing the file drops the shared lock
    except OSError:  # unreadable, or no locks on this file system: nothing is known
        return None


class RunLock:
    """Held from :meth:`acquire` to :meth:`release` (or the end of the process)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise RunDirError naming the process that holds it."""
        if fcntl is None or self._file is not None:
            return
        try:
            f = open(self.path, "a+")
        except OSError:  # e.g. a read-only directory: writing the run fails later with its own message
            return
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise being_trained(self.path.parent, holder) from None
        except OSError:  # the file system does not support locks: train unlocked
            f.close()
            return
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None
