"""``genvae compare RUN RUN ...``: the training curves of several runs in one picture, and their
last logged values side by side (a β sweep, seeds, objectives). Evaluations during training
(``RUN/evals.jsonl``, e.g. ``toy2d.kl``) are curves too."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from genvae.core.config import read_json
from genvae.core.evaluation import records_to_draw
from genvae.core.run import require_run_dir
from genvae.errors import ConfigError
from genvae.viz.curves import SKIP, plot_curves, read_records


def run_labels(runs: Sequence[Path]) -> list[str]:
    """Short, distinct names: the last path component, or more of the path where those clash."""
    for depth in range(1, max(len(r.parts) for r in runs) + 1):
        labels = ["/".join(r.parts[-depth:]) for r in runs]
        if len(set(labels)) == len(labels):
            return labels
    raise ConfigError("the same run is given twice; give each run once")


def compare_runs(runs: Sequence[str | Path], out: str | Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """Draw ``keys`` (default: every value the runs log) of each run's log.jsonl and evals.jsonl into ``out``;
    returns the figure path, the keys and one row per run (objective, last step, last values)."""
    paths = [Path(r) for r in runs]
    if len(paths) < 2:
        raise ConfigError("compare needs at least two runs")
    for path in paths:
        require_run_dir(path)
    labels = run_labels([p.resolve() for p in paths])
    logs = {label: read_records(p / "log.jsonl") + records_to_draw(p) for label, p in zip(labels, paths)}
    logged = sorted({k for records in logs.values() for r in records for k in r} - {"step"})
    unknown = [k for k in keys if k not in logged]
    if unknown:
        raise ConfigError(f"no run logs {', '.join(map(repr, unknown))}; logged values: {', '.join(logged) or '(none)'}")
    shown = list(keys) or [k for k in logged if k not in SKIP]  # lr and steps/s only when asked for
    figure = plot_curves(logs, Path(out), shown)
    if figure is None:
        raise ConfigError("none of these runs has logged anything yet (log.jsonl is empty or missing)")
    rows = []
    for label, path in zip(labels, paths):
        last = {k: v for record in sorted(logs[label], key=lambda r: r.get("step", 0)) for k, v in record.items()}  # each value's latest
        objective = read_json(path / "config.json")["objective"]["name"]
        rows.append({"run": label, "objective": objective, "step": last.get("step"), **{k: last.get(k) for k in shown}})
    return {"figure": str(figure), "keys": shown, "runs": rows}
