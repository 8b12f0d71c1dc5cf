"""``genvae compare RUN RUN ...``: the training curves of several runs in one picture, and their
last logged values side by side (a β sweep, seeds, objectives); a directory of runs stands for
all of them. Evaluations during training
(``RUN/evals.jsonl``, e.g. ``toy2d.kl``) are curves too."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from genvae.core.evaluation import records_to_draw
from genvae.core.run import require_run_dir, run_config_dict, runs_below
from genvae.errors import ConfigError
from genvae.viz.curves import SKIP, picture_formats, plot_curves, read_records


def run_labels(runs: Sequence[Path]) -> list[str]:
    """Short, distinct names: the last path component, or more of the path where those clash."""
    for depth in range(1, max(len(r.parts) for r in runs) + 1):
        labels = ["/".join(r.parts[-depth:]) for r in runs]
        if len(set(labels)) == len(labels):
            return labels
    raise ConfigError("the same run is given twice; give each run once")


def expand_runs(paths: Sequence[Path]) -> list[Path]:
    """Each path as given, except a directory of runs (``runs/``, a bench's output), which stands
    for the runs below it (:func:`~genvae.core.run.runs_below`)."""
    expanded: list[Path] = []
    for path in paths:
        below = [] if (path / "config.json").is_file() or not path.is_dir() else runs_below(path)
        expanded += below or [path]
    return expanded


def compare_runs(runs: Sequence[str | Path], out: str | Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """Draw ``keys`` (default: every value the runs log) of each run's log.jsonl and evals.jsonl into ``out``;
    returns the figure path, the keys, one row per run (objective, data, last step, last values, and
    ``logged_at``: the step of each value last logged before that step) and a ``warning`` (or None)
    when the runs were trained on different data, whose losses are not on one scale."""
    paths, out = expand_runs([Path(r) for r in runs]), Path(out)
    if out.suffix.lower().lstrip(".") not in picture_formats():
        raise ConfigError(f"--out {out.name!r} is not a picture format; end it in one of .{', .'.join(picture_formats())}")
    if len(paths) < 2:
        raise ConfigError(f"compare needs at least two runs, got {len(paths)}" + (f" ({paths[0]})" if paths else ""))
    for path in paths:
        require_run_dir(path)
    labels = run_labels([p.resolve() for p in paths])
    logs = {label: read_records(p / "log.jsonl") + records_to_draw(p) for label, p in zip(labels, paths)}
    logged = sorted({k for records in logs.values() for r in records for k in r} - {"step"})
    unknown = [k for k in keys if k not in logged]
    if unknown:
        raise ConfigError(f"no run logs {', '.join(map(repr, unknown))}; logged values: {', '.join(logged) or '(none)'}")
    shown = list(keys) or [k for k in logged if k not in SKIP]  # lr and steps/s only when asked for
    figure = plot_curves(logs, out, shown)
    if figure is None:
        raise ConfigError("none of these runs has logged anything yet (log.jsonl is empty or missing)")
    rows = []
    for label, path in zip(labels, paths):
        records = sorted(logs[label], key=lambda r: r.get("step", 0))
        last = {k: (r.get("step"), v) for r in records for k, v in r.items()}  # each value's latest, with its step
        step = records[-1].get("step") if records else None
        config = run_config_dict(path / "config.json")
        values = {k: last[k][1] if k in last else None for k in shown}
        # a value last logged before the run's last step (e.g. a warm-up phase's loss) says when
        logged_at = {k: last[k][0] for k in shown if k in last and last[k][0] != step}
        rows.append({"run": label, "objective": config["objective"]["name"], "data": data_label(config["data"]), "step": step, **values,
                     "logged_at": logged_at})  # fmt: skip
    datasets = sorted({row["data"] for row in rows})
    warning = f"the runs were trained on different data ({', '.join(datasets)}): their losses are not on one scale" if len(datasets) > 1 else None
    return {"figure": str(figure), "keys": shown, "runs": rows, "warning": warning}


def data_label(data: dict[str, Any]) -> str:
    """A dataset and what changes its samples: its file or folder, image size and channels."""
    details = [Path(str(data["path"])).name] if data.get("path") else []
    details += [f"{k} {data[k]}" for k in ("resolution", "channels", "columns") if data.get(k) not in (None, [], "")]
    return f"{data['name']} ({', '.join(details)})" if details else str(data["name"])
