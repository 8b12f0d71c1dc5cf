"""What ``genvae train`` (and feature extraction for FID) shows while it runs: a rich progress
bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import math
import sys
import time
from typing import Any


def progress_mode(show_progress: bool | str, is_main_process: bool) -> str | None:
    """"bar" on a terminal or in Jupyter, "lines" elsewhere (or when asked), None when off or
    not the main process."""
    if not show_progress or not is_main_process:
        return None
    if show_progress == "lines":
        return "lines"
    from rich.console import Console

    console = Console()
    return "bar" if console.is_terminal or console.is_jupyter else "lines"


class TrainProgress:
    """Progress as a rich bar with step, losses and speed (refreshed at most 5 times a second), or
    as one plain line per logged step (no terminal: nohup, a redirect, --no-progress)."""

    SHOWN = ("resolution", "alpha", "loss_encoder", "loss_decoder", "loss_vae", "rec", "kl")

    def __init__(self, total: int, start: int, mode: str | None) -> None:
        self.mode, self.total, self.start = mode, total, start
        self._last = 0.0

    def __enter__(self) -> "TrainProgress":
        if self.mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]:.1f} steps/s"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=self.total, completed=self.start, speed=0.0, losses="")
        return self

    def _losses(self, logs: dict[str, float]) -> str:
        return "  ".join(f"{k} {logs[k]:.4g}" for k in self.SHOWN if k in logs and math.isfinite(logs[k]))

    def update(self, step: int, logs: dict[str, float], speed: float) -> None:
        if self.mode == "lines":
            if logs.get("step") == step:  # a new log record
                print(f"step {step}/{self.total}  {self._losses(logs)}  {speed:.1f} steps/s", flush=True)
            return
        if self.mode != "bar":
            return
        now = time.perf_counter()
        if now - self._last < 0.2 and step < self.total:
            return
        self._last = now
        self.progress.update(self.task, completed=step, speed=speed, losses=self._losses(logs))

    def note(self, text: str) -> None:
        """A line of its own, above the bar or among the lines (e.g. an evaluation's numbers)."""
        if self.mode == "bar" and hasattr(self, "progress"):
            self.progress.console.print(text, highlight=False, soft_wrap=True)
        elif self.mode:
            print(text, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self.mode == "bar":
            self.progress.stop()


class ProgressLines:
    """Progress where no bar can be drawn (a redirect, nohup, a job log): one line on stderr at
    most every ``every`` seconds, and one at the end."""

    def __init__(self, description: str, total: int, every: float = 15.0) -> None:
        self.description, self.total, self.every, self.done = description, total, every, 0

    def __enter__(self) -> "ProgressLines":
        self.start = self.last = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._line(time.perf_counter())

    def update(self, task: Any, advance: int) -> None:
        self.done += advance
        now = time.perf_counter()
        if now - self.last >= self.every and self.done < self.total:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last = now
        print(f"{self.description}: {self.done}/{self.total} batches, {self.last - self.start:.0f} s", file=sys.stderr, flush=True)
