"""Training curves from a run's log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SKIP = {"step", "lr", "steps_per_s"}


def plot_losses(log_path: Path, out_path: Path) -> Path | None:
    """One panel per logged value against the step; returns the PNG path (None without a log)."""
    log_path = Path(log_path)
    if not log_path.is_file():
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    keys = sorted({k for r in records for k in r} - SKIP)
    if not records or not keys:
        return None
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        # a value logged only a few times (e.g. a short warm-up phase) would be an invisible line
        ax.plot([p[0] for p in points], [p[1] for p in points], lw=1, marker="o" if len(points) < 5 else None, ms=3)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        values = [p[1] for p in points]
        if values and min(values) > 0 and max(values) / max(min(values), 1e-30) > 100:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.supxlabel("step", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return Path(out_path)
