"""Training curves from a run's log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SKIP = {"step", "lr", "steps_per_s"}


def read_records(log_path: Path) -> list[dict[str, float]]:
    """The records of a .jsonl file (log.jsonl, metrics/*.jsonl), none if it does not exist yet; a
    line cut short by a kill (or still being written) is skipped."""
    if not Path(log_path).is_file():
        return []
    records = []
    for line in Path(log_path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def picture_formats() -> list[str]:
    """The file extensions a figure can be saved as (png, pdf, svg, jpg, ...)."""
    return sorted(Figure().canvas.get_supported_filetypes())


def plot_losses(log_path: Path, out_path: Path) -> Path | None:
    """One panel per logged value against the step; returns the PNG path (None without a log)."""
    return plot_curves({"": read_records(log_path)}, out_path)


def plot_curves(logs: Mapping[str, list[dict[str, float]]], out_path: Path, keys: Sequence[str] | None = None) -> Path | None:
    """One panel per logged value (``keys``, default: all) against the step, one line per run
    (labelled by its key in ``logs`` when there are several); None when there is nothing to draw."""
    found = {k for records in logs.values() for r in records for k in r}
    keys = sorted(found - SKIP) if keys is None else list(keys)
    if not keys or not any(logs.values()):
        return None
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        values = []
        for label, records in logs.items():
            points = [(r["step"], r[key]) for r in records if key in r]
            # a value logged only a few times (e.g. a short warm-up phase) would be an invisible line
            ax.plot([p[0] for p in points], [p[1] for p in points], lw=1, marker="o" if len(points) < 5 else None, ms=3, label=label)
            values += [p[1] for p in points]
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        if values and min(values) > 0 and max(values) / max(min(values), 1e-30) > 100:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    for i, ax in enumerate(list(axes.flat)[: len(keys)]):
        if i + cols >= len(keys):  # the lowest panel of its column
            ax.set_xlabel("step", fontsize=8)
    legend_rows = 0
    if len(logs) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        ncol = max(1, min(len(labels), int(fig.get_figwidth() * 12 / max(len(t) for t in labels))))  # ~12 characters per inch
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
        legend_rows = -(-len(labels) // ncol)
    fig.tight_layout(rect=(0, 0.22 * legend_rows / fig.get_figheight(), 1, 1))  # room for the legend below
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return Path(out_path)
