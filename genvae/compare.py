"""``genvae compare RUN RUN ...``: the training curves of several runs in one picture, and their
last logged values and latest evaluations side by side (a β sweep, seeds, objectives); a
directory of runs stands for all of them. Evaluations during training (``RUN/evals.jsonl``, e.g.
``toy2d.kl``) are curves too; evaluations run afterwards (``RUN/metrics/*.jsonl``, e.g.
``fid.fid``, ``ood.auroc``) are table columns. ``group_by`` settings (``train.seed`` apart, e.g.
``objective.beta_neg``) summarise the runs of each setting as mean ± standard deviation."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any, Sequence

from genvae.core.evaluation import measured_values, records_to_draw
from genvae.core.run import require_run_dir, run_config_dict, runs_below
from genvae.errors import ConfigError, RunDirError
from genvae.run_info import SETTING_KEYS, evaluation_records, record_settings
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


def evaluated_values(latest: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The numbers of each metric's latest evaluation as ``<metric>.<value>`` (``fid.fid``,
    ``ood.auroc``, ``toy2d.kl``)."""
    return {f"{metric}.{key}": value for metric, record in latest.items() for key, value in measured_values(record).items()}


def differing_evaluations(latest: dict[str, dict[str, dict[str, Any]]], keys: Sequence[str]) -> list[str]:
    """For each metric among ``keys``, a warning when the runs' latest records were of different
    settings (an OOD score against other data is not the same number)."""
    out = []
    for metric in dict.fromkeys(k.split(".", 1)[0] for k in keys if "." in k):
        seen = {tuple(record_settings(r[metric]).items()) for r in latest.values() if metric in r}
        if len(seen) > 1:
            kinds = " / ".join(", ".join(f"{s} {v}" for s, v in settings) or "(none)" for settings in sorted(seen))
            one = next(iter(dict(sorted(seen)[0])), "out")
            out.append(f"the runs' latest {metric} evaluations are of different settings ({kinds}): evaluate them alike to compare, "
                       f"or pick one with --where {one}=VALUE")
    return out


def parse_where(where: Sequence[str]) -> dict[str, str]:
    """``--where out=mnist`` clauses as {setting: value}."""
    clauses: dict[str, str] = {}
    for clause in where:
        key, sep, value = clause.partition("=")
        if not sep or key not in SETTING_KEYS or not value:
            raise ConfigError(f"--where {clause!r}: give SETTING=VALUE with a setting of {', '.join(SETTING_KEYS)} (e.g. --where out=mnist)")
        if key in clauses:
            raise ConfigError(f"--where {key}= given twice ({clauses[key]}, {value}); a record is of one {key}: compare one at a time")
        clauses[key] = value
    return clauses


def latest_matching(records: list[dict[str, Any]], where: dict[str, str]) -> dict[str, Any] | None:
    """The latest record that is of the ``where`` settings (one that does not record a setting,
    as FID records no ``out``, is not held to it)."""
    for record in reversed(records):
        settings = record_settings(record)
        if all(k not in settings or names_the_same(settings[k], v) for k, v in where.items()):
            return record
    return None


def names_the_same(recorded: str, wanted: str) -> bool:
    """Whether ``wanted`` names the data (or file) a record was of: the whole recorded text
    (``mnist:split=test``), its dataset name (``mnist``), or the file name of a path in it
    (``ood.npy`` of ``image-array:/data/ood.npy`` or ``image-array:path=ood.npy``)."""
    if wanted in (recorded, recorded.split(":", 1)[0]):
        return True
    return any(part and Path(part).name == Path(wanted).name for part in re.split(r"[:,=]", recorded)[1:])


def setting(config: dict[str, Any], dotted: str) -> Any:
    """``config``'s value of ``section.key`` (``objective.beta_neg``)."""
    section, _, key = dotted.partition(".")
    if section not in config or not isinstance(config[section], dict) or key not in config[section]:
        known = ", ".join(f"{s}.{k}" for s in ("objective", "arch", "data", "train", "optim") for k in config.get(s, {}))
        raise ConfigError(f"--group-by {dotted!r} is no setting of these runs; settings: {known}")
    return config[section][key]


def compare_runs(
    runs: Sequence[str | Path], out: str | Path, keys: Sequence[str] = (), group_by: Sequence[str] = (), where: Sequence[str] = ()
) -> dict[str, Any]:
    """Draw ``keys`` (default: every value the runs log) of each run's log.jsonl and evals.jsonl into
    ``out``; returns the figure path (None when no key is a logged curve), the keys, one row per run
    (objective, data, last step, the values, and ``logged_at``: the step of each value last logged
    before that step), with ``group_by`` one row per group of settings (``groups``: the values'
    mean, standard deviation and count), and ``warnings``: when the runs were trained on different
    data, whose losses are not on one scale, or their latest evaluations were of different settings. A value is a run's last logged one, or for
    ``<metric>.<value>`` keys its latest evaluation (RUN/metrics/, or during training) of the
    ``where`` settings (``out=mnist``)."""
    clauses = parse_where(where)
    given = [Path(r) for r in runs]
    out, skipped, paths, configs = Path(out), [], [], []
    if out.suffix.lower().lstrip(".") not in picture_formats():
        raise ConfigError(f"--out {out.name!r} is not a picture format; end it in one of .{', .'.join(picture_formats())}")
    for path in expand_runs(given):
        try:
            require_run_dir(path)
            configs.append(run_config_dict(path / "config.json"))
            paths.append(path)
        except RunDirError as exc:
            if path in given:  # named by the user: its problem is the answer
                raise
            skipped.append(f"{path} left out: {exc}")  # one damaged run among a directory's, as info lists it
    if len(paths) < 2:
        raise ConfigError(f"compare needs at least two runs, got {len(paths)}" + (f" ({paths[0]})" if paths else ""))
    labels = run_labels([p.resolve() for p in paths])
    logs = {label: read_records(p / "log.jsonl") + records_to_draw(p) for label, p in zip(labels, paths)}
    latest = {}
    for label, path in zip(labels, paths):
        picked = {metric: latest_matching(records, clauses) for metric, records in evaluation_records(path).items()}
        latest[label] = {metric: record for metric, record in picked.items() if record is not None}
    evaluated = {label: evaluated_values(records) for label, records in latest.items()}
    logged = sorted({k for records in logs.values() for r in records for k in r} - {"step"})
    known = sorted(set(logged) | {k for values in evaluated.values() for k in values})
    unknown = [k for k in keys if k not in known]
    if unknown:
        of = f" (evaluations of {' '.join(where)})" if where else ""
        metrics = sorted({k.split(".")[0] for k in unknown if "." in k})
        record = f"; or evaluate the runs first (genvae eval {metrics[0]} RUN)" if metrics else ""
        raise ConfigError(f"no run logs or has evaluated {', '.join(map(repr, unknown))}{of}; give --key one of: {', '.join(known) or '(none)'}{record}")
    shown = list(keys) or [k for k in logged if k not in SKIP] or known  # lr and steps/s only when asked for; evaluations when named
    curves = [k for k in shown if k in logged]
    figure = plot_curves(logs, out, curves) if curves else None
    if not any(logs.values()) and not any(evaluated.values()):
        raise ConfigError("none of these runs has logged or been evaluated yet (log.jsonl is empty or missing)")
    rows = []
    for label, config in zip(labels, configs):
        records = sorted(logs[label], key=lambda r: r.get("step", 0))
        last = {k: (r.get("step"), v) for r in records for k, v in r.items()}  # each value's latest, with its step
        last.update({k: (None, v) for k, v in evaluated[label].items()})  # evaluations afterwards come last
        step = records[-1].get("step") if records else None
        values = {k: last[k][1] if k in last else None for k in shown}
        # a value last logged before the run's last step (e.g. a warm-up phase's loss) says when
        logged_at = {k: last[k][0] for k in shown if k in last and last[k][0] not in (None, step)}
        rows.append({"run": label, "objective": config["objective"]["name"], "data": data_label(config["data"]), "step": step, **values,
                     "logged_at": logged_at})  # fmt: skip
    datasets = sorted({row["data"] for row in rows})
    warnings = [f"the runs were trained on different data ({', '.join(datasets)}): their losses are not on one scale"] if len(datasets) > 1 else []
    warnings += differing_evaluations(latest, shown) + skipped
    evaluations = sorted({k for values in evaluated.values() for k in values} - set(shown))
    result = {"figure": None if figure is None else str(figure), "keys": shown, "runs": rows, "warnings": warnings, "evaluations": evaluations}
    if group_by:
        result["group_by"], result["groups"] = list(group_by), summarise_groups(rows, configs, list(group_by), shown)
    return result


def summarise_groups(rows: list[dict[str, Any]], configs: list[dict[str, Any]], group_by: list[str], keys: list[str]) -> list[dict[str, Any]]:
    """One row per value of the ``group_by`` settings, in their order (numbers by value): the
    settings, the runs, and per key (mean, standard deviation, count) over the runs that have it."""
    groups: dict[str, tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}
    for row, config in zip(rows, configs):
        values = tuple(setting(config, g) for g in group_by)
        groups.setdefault(repr(values), (values, []))[1].append(row)  # repr: lists are settings too

    def order(values: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
        return tuple((0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v)) for v in values)

    out = []
    for values, members in sorted(groups.values(), key=lambda group: order(group[0])):
        summary: dict[str, Any] = {**dict(zip(group_by, values)), "runs": [m["run"] for m in members]}
        for key in keys:
            numbers = [m[key] for m in members if isinstance(m[key], (int, float)) and math.isfinite(m[key])]
            summary[key] = (statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else 0.0, len(numbers)) if numbers else None
        out.append(summary)
    return out


def data_label(data: dict[str, Any]) -> str:
    """A dataset and what changes its samples: its file or folder, image size and channels."""
    details = [Path(str(data["path"])).name] if data.get("path") else []
    details += [f"{k} {data[k]}" for k in ("resolution", "channels", "columns") if data.get(k) not in (None, [], "")]
    return f"{data['name']} ({', '.join(details)})" if details else str(data["name"])


def csv_lines(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The table for a script: numbers at full precision, one column each (a group's mean, std and
    count per key; a run's value and the step it was logged at when that is not the run's last)."""
    keys = result["keys"]
    if "groups" in result:
        header = [*result["group_by"], "runs", *(f"{k} {part}" for k in keys for part in ("mean", "std", "n"))]
        return header, [[*(group[s] for s in result["group_by"]), len(group["runs"]),
                         *(value for k in keys for value in (group[k] or ("", "", 0)))] for group in result["groups"]]  # fmt: skip
    header = ["run", "objective", "data", "last step", *keys, *(f"{k} step" for k in keys)]
    return header, [[row["run"], row["objective"], row["data"], row["step"], *("" if row[k] is None else row[k] for k in keys),
                     *(row["logged_at"].get(k, row["step"] if row[k] is not None else "") for k in keys)] for row in result["runs"]]  # fmt: skip


def table_lines(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the printed table: one row per group of settings (mean ± std over
    its runs, and their count when not all runs have the value) when grouped, else one per run."""

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)

    def summary(stats: tuple[float, float, int] | None, runs: int) -> str:
        if stats is None:
            return "-"
        mean, std, n = stats
        if runs == 1:
            return cell(mean)
        return f"{mean:.4g} ± {std:.2g}" + (f" (n={n})" if n != runs else "")

    keys = result["keys"]
    if "groups" in result:
        header = [*result["group_by"], "runs", *keys]
        rows = [[*(str(group[s]) for s in result["group_by"]), str(len(group["runs"])), *(summary(group[k], len(group["runs"])) for k in keys)]
                for group in result["groups"]]  # fmt: skip
        return header, rows
    header = ["run", "objective", "data", "last step", *keys]
    rows = []
    for row in result["runs"]:
        at = row["logged_at"]
        rows.append([row["run"], row["objective"], row["data"], cell(row["step"]), *(cell(row[k]) + (f" (step {at[k]})" if k in at else "") for k in keys)])
    return header, rows
