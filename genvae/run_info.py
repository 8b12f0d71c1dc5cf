"""``genvae info RUN``: what a run directory holds — what was trained, how far it got, how to go
on, and what has been measured on it. Reads only the run's JSON files and the safetensors
headers: it never loads a network and never changes the run."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from genvae.core.checkpoint import CHECKPOINT_DIR, checkpoint_step, damaged, find_checkpoint, trained_without_checkpoint
from genvae.core.config import read_json
from genvae.core.evaluation import EVALS_FILE, measured_values
from genvae.core.health import log_warning
from genvae.core.run import require_run_dir, run_config_dict
from genvae.core.trainer import STOP_NOTE
from genvae.errors import GenvaeError, RunDirError, shell_quote
from genvae.viz.curves import read_records

HIDDEN_LOG_KEYS = ("step", "lr", "steps_per_s")
MAX_METRIC_VALUES = 6
SETTING_KEYS = ("out", "score", "ref", "split")  # what an evaluation was of, shown beside its numbers


def parameter_count(weights: Path) -> int | None:
    """Number of parameters in a model.safetensors, from its header alone; None when there is
    none yet, a RunDirError naming the file and the fix when it is damaged."""
    if not weights.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="numpy") as f:
            return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
    except SafetensorError as exc:
        raise damaged(weights, "is unreadable (truncated or not a safetensors file)") from exc


def parameter_counts(run_dir: Path) -> tuple[dict[str, int | None], dict[str, str]]:
    """Parameters of the exported encoder and decoder, and what is wrong with a damaged one."""
    counts: dict[str, int | None] = {}
    problems: dict[str, str] = {}
    for role in ("encoder", "decoder"):
        try:
            counts[role] = parameter_count(run_dir / role / "model.safetensors")
        except RunDirError as exc:
            counts[role], problems[role] = None, str(exc)
    return counts, problems


def class_count(run_dir: Path) -> int:
    """The number of classes the exported networks are conditioned on (0: none, or no export yet)."""
    config = run_dir / "encoder" / "config.json"
    if not config.is_file():
        return 0
    try:
        return int(read_json(config).get("config", {}).get("num_classes", 0) or 0)
    except (GenvaeError, AttributeError, TypeError, ValueError):  # a damaged export: parameter_counts says so
        return 0


def headline(record: dict[str, Any]) -> dict[str, float]:
    """The first measured numbers of a metrics record (:func:`~genvae.core.evaluation.measured_values`)."""
    return dict(list(measured_values(record).items())[:MAX_METRIC_VALUES])


def evaluation_records(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Per metric, the records of the evaluations run on ``run_dir`` (``genvae eval``, or during
    training), oldest first: ``metrics/<metric>.jsonl``, and ``metrics.json`` of ``eval toy2d``."""
    out: dict[str, list[dict[str, Any]]] = {}
    if (run_dir / "metrics.json").is_file():
        out["toy2d"] = [read_json(run_dir / "metrics.json")]
    for path in sorted((run_dir / "metrics").glob("*.jsonl")):
        if records := read_records(path):
            out[path.stem] = records
    return out


def record_settings(record: dict[str, Any]) -> dict[str, str]:
    """What an evaluation was of: its ``SETTING_KEYS`` (out, score, ref, split)."""
    return {k: record[k] for k in SETTING_KEYS if isinstance(record.get(k), str)}


def metric_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per metric: how many evaluations are recorded, the numbers of the latest, what it was of
    (``settings``) and the training step of the weights it scored (``step``, when recorded)."""
    out: dict[str, dict[str, Any]] = {}
    for metric, records in evaluation_records(run_dir).items():
        latest = records[-1]
        if metric == "toy2d":  # eval toy2d's one record (metrics.json): its three Table 2 numbers
            out[metric] = {"evaluations": 1, "latest": {k: latest[k] for k in ("kl", "jsd", "gnelbo") if k in latest}, **_scored_step(latest)}
        else:
            out[metric] = {"evaluations": len(records), "latest": headline(latest), "settings": record_settings(latest), **_scored_step(latest)}
    during = read_records(run_dir / EVALS_FILE)
    if during:
        out["during training"] = {"evaluations": len(during), "latest": headline(during[-1]), "step": during[-1].get("step")}
    return out


def _scored_step(record: dict[str, Any]) -> dict[str, int]:
    return {"step": record["step"]} if isinstance(record.get("step"), int) else {}


def training_state(run_dir: Path, trained: int | None, total: int, logged: dict[str, Any] | None, checkpoint_every: int = 0) -> dict[str, Any]:
    """Where training stands. A run that is still training looks like a killed one here; the
    age of its last log line tells them apart. Ctrl-C and non-finite losses leave a note saying why."""
    resume = f"genvae train --run-dir {shell_quote(run_dir)} --resume"
    note = run_dir / STOP_NOTE
    if note.is_file():
        stop = read_json(note)
        return {"state": f"stopped at step {stop.get('step')} ({stop.get('time')}): {stop.get('reason')}", "next": resume}
    if trained is None and (lost := trained_without_checkpoint(run_dir, checkpoint_every)) is not None:
        return {"state": f"trained to step {lost}, but its checkpoint folder is missing or damaged",
                "next": f"restore {run_dir / CHECKPOINT_DIR} from a backup to continue it (--resume refuses to start it again from step 0)"}
    if trained is None:
        started = "not started" if logged is None else f"no checkpoint yet (logged up to step {logged.get('step')})"
        return {"state": started, "next": f"{resume} (starts from step 0)"}
    if trained >= total:
        return {"state": f"finished: {trained} of {total} steps", "next": f"{resume} --steps N (N > {total}) trains further"}
    return {"state": f"checkpoint at step {trained} of {total}", "next": f"{resume} (unless it is still training)"}


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def run_info(run_dir: str | Path) -> dict[str, Any]:
    """Everything ``genvae info`` shows, as a JSON-able dict."""
    path = Path(run_dir)
    require_run_dir(path)
    cfg = run_config_dict(path / "config.json")  # with the options added since it was saved, as it is rebuilt
    checkpoint = find_checkpoint(path)
    trained = checkpoint_step(checkpoint) if checkpoint else None
    total = int(cfg["train"]["steps"])
    log = path / "log.jsonl"
    records = read_records(log)  # complete records only: a line cut short by a kill is skipped
    logged = records[-1] if records else None
    models, damaged_models = parameter_counts(path)
    figures = sorted(str(p.relative_to(path)) for pattern in ("*.png", "metrics/*.png") for p in path.glob(pattern))
    return {
        "run": str(path),
        "objective": cfg["objective"],
        "arch": cfg["arch"],
        "data": cfg["data"],
        "train": cfg["train"],  # the seed of a sweep's run, among others
        "steps_total": total,
        "steps_trained": trained,
        **training_state(path, trained, total, logged, int(cfg["train"].get("checkpoint_every", 0))),
        "last_log": logged,
        "last_log_age_s": round(time.time() - log.stat().st_mtime, 1) if logged else None,
        "parameters": models,
        "num_classes": class_count(path),
        "damaged": damaged_models,
        "metrics": metric_records(path),
        "figures": figures,
        "warning": log_warning(records, cfg["objective"]),
    }


def format_log(record: dict[str, Any]) -> str:
    values = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in HIDDEN_LOG_KEYS and isinstance(v, (int, float)))
    rate = f"; {record['steps_per_s']:.1f} steps/s" if isinstance(record.get("steps_per_s"), (int, float)) else ""
    return f"step {record.get('step')}: {values}{rate}"


def format_settings(section: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in section.items() if k != "name")
    return f"{section['name']} ({options})" if options else section["name"]


def info_table(info: dict[str, Any]) -> Table:
    """``genvae info RUN``: one row per :func:`format_info` line."""
    table = Table(title=info["run"], show_header=False, box=None, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, text in format_info(info):
        table.add_row(label, text)
    return table


def format_info(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows for the terminal."""
    rows = [
        ("objective", format_settings(info["objective"])),
        ("arch", format_settings(info["arch"])),
        ("data", format_settings(info["data"])),
        *([("classes", f"{info['num_classes']}: class-conditional; sample, reconstruct and interpolate take the class with --label")] if info.get("num_classes") else []),
        ("training", info["state"]),
        ("continue", info["next"]),
    ]
    if info["last_log"]:
        rows.append(("last log", f"{format_log(info['last_log'])} ({age(info['last_log_age_s'])})"))
    params = [f"{role} {n:,}" for role, n in info["parameters"].items() if n is not None]
    params += [f"{role} unreadable" for role in info["damaged"]]
    rows.append(("parameters", ", ".join(params) if params else "no exported models yet"))
    rows += [("damaged", problem) for problem in info["damaged"].values()]
    for name, m in info["metrics"].items():
        numbers = ", ".join(f"{k} {v:.4g}" for k, v in m["latest"].items())
        of = ", ".join(f"{k} {v}" for k, v in m.get("settings", {}).items())
        at_step = f"step {m['step']}" if "step" in m else ""
        if at_step and info["steps_trained"] is not None and m["step"] < info["steps_trained"]:
            at_step += f", older than the checkpoint of step {info['steps_trained']}"
        notes = "; ".join(n for n in (of, at_step, f"latest of {m['evaluations']}") if n)
        rows.append((f"eval {name}", f"{numbers} ({notes})"))
    if info["figures"]:
        rows.append(("figures", ", ".join(info["figures"])))
    if info.get("warning"):
        rows.append(("warning", info["warning"]))
    return rows


def overview(runs: list[Path]) -> list[dict[str, Any]]:
    """:func:`run_info` of each run (e.g. the :func:`~genvae.core.run.runs_below` a directory); a
    run that cannot be read is ``{"run": ..., "error": ...}``, so that it does not hide the others."""
    infos = []
    for path in runs:
        try:
            infos.append(run_info(path))
        except GenvaeError as exc:
            infos.append({"run": str(path), "error": str(exc)})
    return infos


def overview_row(info: dict[str, Any]) -> tuple[str, ...]:
    """(run, objective, arch, data, steps, evaluations) for the table of ``genvae info DIR``; a
    damaged run says so in place of its evaluations (``genvae info RUN`` says how to repair it)."""
    if "error" in info:
        return (info["run"], "-", "-", "-", "-", f"unreadable; genvae info {info['run']} says why")
    trained = "-" if info["steps_trained"] is None else str(info["steps_trained"])
    evaluations = "; ".join(
        f"{name} " + " ".join(f"{'' if k == name else k + ' '}{v:.4g}" for k, v in list(m["latest"].items())[:1]) for name, m in info["metrics"].items()
    )  # "fid 12.3", "ood auroc 0.99"
    if info["damaged"]:
        files = ", ".join(f"{role}/model.safetensors" for role in info["damaged"])
        evaluations = f"damaged: {files}; genvae info {info['run']} says how to repair it"
    data = info["data"]["name"] + (f" ({info['num_classes']} classes, conditional)" if info.get("num_classes") else "")
    names = (info["objective"]["name"], info["arch"]["name"], data)
    return (info["run"], *names, f"{trained} / {info['steps_total']}", evaluations)


def overview_table(runs: list[dict[str, Any]], directory: Path) -> Table:
    """``genvae info DIR``: one line per run."""
    table = Table(title=f"{len(runs)} run{'' if len(runs) == 1 else 's'} in {directory}", title_justify="left")
    for column in ("run", "objective", "arch", "data", "steps", "latest evaluations"):
        table.add_column(column, overflow="fold")
    for info in runs:
        run, *rest = overview_row(info)
        table.add_row(_below(Path(run), directory), *rest)  # the title names the directory
    return table


def _below(path: Path, directory: Path) -> str:
    """``path`` relative to ``directory`` when it lies below it, else as it is."""
    try:
        return str(path.relative_to(directory)) or "."
    except ValueError:
        return str(path)
