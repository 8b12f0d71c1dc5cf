"""The paper's Table 2 (Section 6.1), trained batched (genvae.batched) and evaluated with the 2-D
metrics, and the helpers the other 2-D benchmarks share (``bench_stability.py``: Figure 3,
``bench_collapse.py``: Figure 21).

``run_table2``: VAE, IntroVAE, Soft-IntroVAE on 8gaussians, 2spirals, checkerboard, rings with
Table 5 hyperparameters, N seeds; KL, JSD, gnELBO (mean ± std) beside the paper's values; a
Figure-2-style grid of samples and densities. Every cell (dataset × objective) is one batched
model whose result is kept under ``out_dir/cells/`` and reused by a rerun with the same settings.

Each function writes its files into ``out_dir`` and returns the data it wrote (JSON-able).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from genvae.batched import BatchedTrainer, member_configs, resolve_device
from genvae.core.bench_run import (
    BENCH_CHECKPOINT_EVERY,
    bookkeeping_keys,
    differing_settings,
    flat_settings,
    left_out_note,
    run_in_workers,
    settings_change,
    settings_for,
)
from genvae.core.checkpoint import export_component
from genvae.core.config import parse_override, write_json
from genvae.core.run import load_component, with_added_options
from genvae.errors import ConfigError, RunDirError
from genvae.plugins.metrics.toy2d import compute_metrics, elbo_energy, generated_samples, real_samples, sampling_floor, squared_norm_gnelbo

DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")
OBJECTIVES = ("vae", "intro", "soft-intro")
LABELS = {"vae": "VAE", "intro": "IntroVAE", "soft-intro": "Soft-IntroVAE"}
METRICS = ("gnelbo", "kl", "jsd")
CELL_RESULT = "result.json"
CELL_STATE, CELL_SETTINGS = "state.pt", "settings.json"  # a cell's batched training in progress

# The paper's Table 2: dataset -> metric -> objective -> (mean, std). gnELBO in 1e-7 units.
PAPER_TABLE2: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "8gaussians": {
        "gnelbo": {"vae": (7.42, 0.07), "intro": (1.29, 0.76), "soft-intro": (1.25, 0.35)},
        "kl": {"vae": (6.72, 0.46), "intro": (2.53, 1.07), "soft-intro": (1.25, 0.11)},
        "jsd": {"vae": (16.04, 0.3), "intro": (1.67, 0.46), "soft-intro": (0.96, 0.15)},
    },
    "2spirals": {
        "gnelbo": {"vae": (6.19, 0.06), "intro": (5.87, 0.03), "soft-intro": (5.21, 0.04)},
        "kl": {"vae": (9.8, 0.48), "intro": (8.38, 0.45), "soft-intro": (8.13, 0.3)},
        "jsd": {"vae": (4.89, 0.05), "intro": (3.58, 0.04), "soft-intro": (3.37, 0.04)},
    },
    "checkerboard": {
        "gnelbo": {"vae": (8.53, 0.1), "intro": (8.54, 0.11), "soft-intro": (4.47, 0.29)},
        "kl": {"vae": (20.91, 0.45), "intro": (19.03, 0.34), "soft-intro": (20.27, 0.21)},
        "jsd": {"vae": (9.78, 0.04), "intro": (9.07, 0.1), "soft-intro": (9.06, 0.15)},
    },
    "rings": {
        "gnelbo": {"vae": (6.4, 0.04), "intro": (7.25, 0.18), "soft-intro": (6.3, 0.08)},
        "kl": {"vae": (13.16, 0.55), "intro": (10.21, 0.49), "soft-intro": (9.18, 0.33)},
        "jsd": {"vae": (7.26, 0.07), "intro": (4.24, 0.11), "soft-intro": (4.13, 0.09)},
    },
}

Log = Callable[[str], None]


def as_seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: a count n means seeds 0, ..., n − 1."""
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=0)) if len(a) > 1 else 0.0


def train_batched(
    objective: str,
    dataset: str,
    seeds: Sequence[int],
    steps: int,
    overrides: Sequence[Mapping[str, Any]] | None = None,
    train: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | None = None,
    log: Log | None = None,
    device: str | None = None,
    checkpoint: Path | None = None,
    compile: bool = False,
) -> BatchedTrainer:
    """Train len(overrides) × len(seeds) members (dataset recommendations + overrides) for ``steps``.

    With ``checkpoint``, the state is saved there every ``BENCH_CHECKPOINT_EVERY`` steps and at the
    end, and a call that finds it continues from it (equal to training straight through).
    ``compile``: torch.compile the step (same results to float rounding; see BatchedTrainer)."""
    cfgs, data = member_configs(objective, dataset, seeds, overrides=overrides, train={**(train or {}), "steps": steps}, arch=arch)
    bt = BatchedTrainer(cfgs, data, device=device, compile=compile)
    if checkpoint is not None and checkpoint.is_file():
        bt.load(checkpoint)
        if log:
            done = "finished" if bt.step >= steps else f"continuing from step {bt.step:,}"
            log(f"{checkpoint.parent.name}: {done} (state saved by an earlier call)")
    bt.fit(steps, log_every=max(steps // 10, 1) if log else 0, progress=log, checkpoint=checkpoint, checkpoint_every=BENCH_CHECKPOINT_EVERY)
    return bt


def evaluate_members(bt: BatchedTrainer, eval_seed: int = 0, grid_points: int = 1024, **options: Any) -> list[dict[str, Any]]:
    """The 2-D metrics of every member of a trained BatchedTrainer."""
    out = []
    scale = float(getattr(bt.data, "plot_scale", 2.0))
    for r in range(bt.R):
        enc, dec = bt.member_modules(r)
        m = compute_metrics(enc, dec, bt.data, scale, sum(enc.latent_groups.values()), seed=eval_seed, grid_points=grid_points, **options)
        m["seed"] = bt.cfgs[r].train.seed
        m["objective"] = {k: v for k, v in bt.cfgs[r].objective.items()}
        out.append(m)
    return out


# --------------------------------------------------------------------------------------------
# Table 2
# --------------------------------------------------------------------------------------------


def evaluated_cell(bt: BatchedTrainer, eval_seed: int, grid_points: int) -> dict[str, Any]:
    """What a finished batched model keeps (see :func:`save_cell`): every member's metrics, and
    its training and evaluation times and device."""
    t0 = time.perf_counter()
    members = evaluate_members(bt, eval_seed=eval_seed, grid_points=grid_points)
    return {"members": members, "train_seconds": bt.seconds, "eval_seconds": time.perf_counter() - t0, "device": str(bt.device)}


def run_table2(
    out_dir: str | Path,
    steps: int = 30_000,
    seeds: int | Sequence[int] = 5,
    datasets: Sequence[str] = DATASETS,
    objectives: Sequence[str] = OBJECTIVES,
    grid_points: int = 1024,
    eval_seed: int = 0,
    train: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | None = None,
    objective_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    log: Log | None = print,
    device: str | None = None,
    train_missing: bool = True,
    jobs: int = 1,
    compile: bool = False,
) -> dict[str, Any]:
    """Train and evaluate the Table 2 grid; writes table2.json, table2.md and table2_grid.png.

    Each finished (dataset, objective) cell is kept under ``out_dir/cells/``; calling again with
    the same ``out_dir`` and settings reuses those and trains only the missing cells (a cell
    interrupted mid-training continues from its last saved state). ``train_missing=False`` trains
    nothing: the table and figure then show the finished cells only, e.g. while a long run goes on.
    ``jobs`` > 1 trains that many cells at once, one worker process (and torch thread) each. A
    cell's step is a few hundred tiny kernels, bound by Python and launches, so one cell leaves a
    GPU mostly idle; 13 at once kept an H100 85-95 % busy (docs/results.md, "On one GPU"). Each
    cell's result does not depend on ``jobs``, nor (beyond float rounding) on ``compile``."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if train_missing:
        resolve_device(device)  # a GPU asked for but absent stops here, before anything is written
    out = Path(out_dir)
    if train_missing:
        out.mkdir(parents=True, exist_ok=True)
    seed_list = as_seed_list(seeds)
    results: dict[str, Any] = {"steps": steps, "seeds": seed_list, "grid_points": grid_points, "runs": {}, "summary": {}, "floor": {}}
    if objective_overrides:
        results["objective_overrides"] = {o: dict(v) for o, v in objective_overrides.items() if v}
    if arch:
        results["arch"] = dict(arch)
    figure_models: dict[tuple[str, str], Any] = {}
    t_start = time.perf_counter()
    cells = []
    for d in datasets:
        for o in objectives:
            override = dict((objective_overrides or {}).get(o, {}))
            resolved, data = first_member(o, d, override, steps, train, arch)
            settings = {"steps": steps, "seeds": seed_list, "grid_points": grid_points, "eval_seed": eval_seed,
                        "train": dict(train or {}), "arch": dict(arch or {}), "objective": override,
                        "resolved": resolved}  # fmt: skip
            cells.append((d, o, out / "cells" / f"{d}-{o}", settings, data))
    if not train_missing and not any(c[2].exists() for c in cells):
        raise ConfigError(f"{out} holds none of these Table 2 cells, finished or training{'' if out.is_dir() else ' (it does not exist)'}: "
                          "there is nothing to report; check --out, --data and --objective, or train them with the same command "
                          "without --report")  # fmt: skip
    missing = [c for c in cells if saved_cell(c[2], c[3]) is None]
    if train_missing and missing:
        tasks = [{"dataset": d, "objective": o, "cell": str(cell), "settings": settings, "device": device, "compile": compile,
                  "threads": 1 if jobs > 1 else None}
                 for d, o, cell, settings, _ in missing]  # fmt: skip
        _run_tasks(_train_cell, tasks, jobs, log, "table2")
    trained = {c[2] for c in missing}
    for d, o, cell, settings, data in cells:
        record = saved_cell(cell, settings)
        if record is None:
            if log:
                log(f"[table2] {d:12s} {LABELS[o]:14s} not finished{_progress_of(cell, steps)}")
            continue
        results["runs"][f"{d}/{o}"] = record
        members = record["members"]
        results["summary"].setdefault(d, {})[o] = {k: mean_std([m[k] for m in members]) for k in (*METRICS, "jsd_textbook")}
        figure_models[(d, o)] = ((load_component(cell / "encoder"), load_component(cell / "decoder")), data)
        if d not in results["floor"]:
            scale = float(getattr(data, "plot_scale", 2.0))
            results["floor"][d] = {**sampling_floor(data, scale, eval_seed), "gnelbo": (squared_norm_gnelbo(data, scale, eval_seed, grid_points=grid_points), 0.0)}
        if log:
            s = results["summary"][d][o]
            log(
                f"[table2] {d:12s} {LABELS[o]:14s} train {record['train_seconds']:6.1f}s eval {record['eval_seconds']:5.1f}s  "
                + "  ".join(f"{k}={s[k][0]:.3g}±{s[k][1]:.2g}" for k in (*METRICS, "jsd_textbook"))
                + ("" if cell in trained else "  (saved by an earlier call)")
            )
    results["seconds"] = time.perf_counter() - t_start
    write_json(out / "table2.json", results)
    (out / "table2.md").write_text(table2_markdown(results))
    table2_grid(figure_models, datasets, objectives, out / "table2_grid.png")
    return results


def _train_cell(task: Mapping[str, Any], log: Log | None = None) -> str:
    """Train and evaluate one Table 2 cell and keep it under its directory (a worker process's
    task when the bench runs several jobs)."""
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    s, cell = task["settings"], Path(task["cell"])
    bt = train_batched(task["objective"], task["dataset"], s["seeds"], s["steps"], overrides=[s["objective"]], train=s["train"], arch=s["arch"],
                       log=log, device=task["device"], checkpoint=cell_state(cell, s), compile=task["compile"])  # fmt: skip
    record = evaluated_cell(bt, eval_seed=s["eval_seed"], grid_points=s["grid_points"])
    save_cell(cell, s, record, bt.member_modules(0), bt.cfgs[0].arch["name"])
    return f"{cell.name}: trained in {bt.seconds:.0f} s on {bt.device}"


def _run_tasks(fn: Callable[..., str], tasks: Sequence[Mapping[str, Any]], jobs: int, log: Log | None, name: str) -> None:
    """fn(task) for every task: in this process (with its progress logged), or ``jobs`` at a time
    in worker processes (spawned: safe with CUDA), each finished task logged as it ends."""
    if jobs == 1 or len(tasks) == 1:
        for t in tasks:
            fn({**t, "threads": None}, log)  # this process keeps its own thread count
        return
    if log:
        log(f"[{name}] {len(tasks)} to train, {jobs} at a time (each reported when it ends)")
    run_in_workers(fn, tasks, jobs, lambda i, message: log(f"[{name}] {message}") if log else None)


def first_member(objective: str, dataset: str, override: Mapping[str, Any], steps: int, train: Mapping[str, Any] | None,
                  arch: Mapping[str, Any] | None) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """The complete config of a cell's first member, seed left out (part of the cell's settings, so
    that a saved cell is not reused once a default or a dataset's recommendation has changed), and
    its dataset."""
    cfgs, data = member_configs(objective, dataset, [0], overrides=[override], train={**(train or {}), "steps": steps}, arch=arch)
    cfg = cfgs[0].to_dict()
    cfg["train"].pop("seed")
    return cfg, data


def arch_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``--set arch.KEY=VALUE`` strings as the ``arch`` settings of every cell (Figure 3 and 21's
    benches: each objective's weights there are the paper's)."""
    arch: dict[str, Any] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        if section != "arch":
            raise ConfigError(f"--set {text!r}: this bench takes arch.KEY=VALUE only (the objectives' settings are the paper's)")
        arch[key] = value
    return arch


def table2_overrides(overrides: Sequence[str], objectives: Sequence[str], log: Log | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``bench table2 --set``: ``arch.KEY=VALUE`` for every cell, and ``objective.KEY=VALUE`` over
    Table 5's value for each objective that has the option (e.g. ``objective.encoder_fake_grad=target``
    for Soft-IntroVAE as the authors' code trains it); the others go without it, with a logged note.
    A key that no objective has is kept, so that it fails as a typo."""
    arch: dict[str, Any] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in ("arch", "objective"):
            raise ConfigError(f"--set {text!r}: bench table2 takes arch.KEY=VALUE and objective.KEY=VALUE only")
        if section == "arch":
            arch[key] = value
    per_objective: dict[str, dict[str, Any]] = {}
    for o in objectives:
        kept = settings_for(o, overrides, objectives)
        per_objective[o] = {key: value for section, key, value in map(parse_override, kept) if section == "objective"}
        if log and (note := left_out_note("table2", o, overrides, kept)):
            log(note)
    return arch, {o: v for o, v in per_objective.items() if v}


def _refuse_other_settings(cell: Path, saved: Mapping[str, Any], wanted: Mapping[str, Any], holds: str) -> None:
    """Refuse a cell trained with other effective settings. The options a call passed (``train``,
    ``arch``, ``objective``) are not compared themselves: their effect is in ``resolved``, so a
    setting passed explicitly equals the same value taken from a default."""
    given = ("train", "arch", "objective")
    saved, wanted = ({k: v for k, v in s.items() if k not in given} for s in (saved, wanted))
    saved["resolved"] = with_added_options(saved.get("resolved", {}))
    ignore = bookkeeping_keys("resolved.train")
    change = settings_change(saved, wanted, ignore=ignore)
    if change:
        flat = flat_settings(saved)
        arch = [f"--set arch.{k.split('.', 2)[2]}={json.dumps(flat.get(k))}" for k in differing_settings(saved, wanted, ignore) if k.startswith("resolved.arch.")]
        again = f" (here: {' '.join(arch)})" if arch else ""
        raise RunDirError(f"{cell} {holds} other settings ({change}); pass the saved ones{again}, choose another --out or remove that directory")


def _progress_of(cell: Path, steps: int) -> str:
    """Where an unfinished cell's saved training stands (for a report while it trains)."""
    state = cell / CELL_STATE
    if not state.is_file():
        return ""
    return f" (state saved at step {int(torch.load(state, map_location='cpu', weights_only=True)['step']):,} of {steps:,})"


def saved_cell(cell: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Table 2 cell finished by an earlier call with the same settings (None: not yet), so that
    a rerun after a crash or Ctrl-C trains only the missing cells."""
    path = cell / CELL_RESULT
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    _refuse_other_settings(cell, saved.pop("settings"), settings, "was computed with")
    return {**saved, "reused": True}


def cell_state(cell: Path, settings: Mapping[str, Any]) -> Path:
    """Where the cell's batched training keeps its state while in progress (every
    ``BENCH_CHECKPOINT_EVERY`` steps), so that a rerun after a crash or Ctrl-C continues it."""
    state, saved = cell / CELL_STATE, cell / CELL_SETTINGS
    if state.is_file():
        if not saved.is_file():
            raise RunDirError(f"{cell} holds training state without its settings.json; remove {state} to train that cell again")
        _refuse_other_settings(cell, json.loads(saved.read_text()), settings, "holds training with")
    else:
        write_json(saved, settings)
    return state


def save_cell(cell: Path, settings: Mapping[str, Any], record: Mapping[str, Any], member0: tuple[Any, Any] = (), arch: str = "") -> None:
    """The cell's metrics and, if given, seed 0's networks (for a figure); the metrics file,
    written last, marks the cell complete, and the training state is then no longer needed."""
    for role, module in zip(("encoder", "decoder"), member0):
        export_component(module, cell / role, role, arch)
    write_json(cell / CELL_RESULT, {"settings": settings, **record})
    (cell / CELL_STATE).unlink(missing_ok=True)
    (cell / CELL_SETTINGS).unlink(missing_ok=True)


def table2_markdown(results: Mapping[str, Any]) -> str:
    lines = [
        f"# Table 2 reproduction ({results['steps']} steps, seeds {results['seeds']}, mean ± std)",
        "",
        "Ours / paper (Daniel & Tamar 2021, Table 2). gnELBO in 1e-7 units; KL and JSD as the authors'",
        "code computes them (100×100 density histograms, 5,000 samples). Lower is better.",
        "`jsd (textbook)` is the true Jensen–Shannon divergence of the normalized histograms, in nats.",
        "`reference`: for KL and JSD a perfect model, i.e. further 5,000-sample draws of the data scored",
        "as a model's samples (mean ± std of 5): the floor that the histograms' sampling noise sets; for",
        "gnELBO the energy ‖x‖² (encoder = prior, decoder = origin: about what an untrained network",
        "scores). Where the data lie nearer the origin than the grid's average point (2spirals, rings),",
        "this reference scores lower than any model.",
        "",
    ]
    changed = [f"{LABELS.get(o, o)}: " + ", ".join(f"{k}={v}" for k, v in options.items()) for o, options in results.get("objective_overrides", {}).items()]
    changed += ["architecture: " + ", ".join(f"{k}={v}" for k, v in results["arch"].items())] if results.get("arch") else []
    if changed:
        lines += ["Settings other than the paper's Table 5 and the authors' network: " + "; ".join(changed) + ".", ""]
    objectives = [o for o in OBJECTIVES if any(o in v for v in results["summary"].values())]
    floor = results.get("floor", {})
    lines.append("| " + " | ".join(["dataset", "metric", *(LABELS[o] for o in objectives), "reference"]) + " |")
    lines.append("|---|---|" + "---|" * (len(objectives) + 1))
    for d, per_obj in results["summary"].items():
        for metric in (*METRICS, "jsd_textbook"):
            cells = []
            for o in objectives:
                if o not in per_obj:
                    cells.append("")
                    continue
                m, s = per_obj[o][metric]
                cell = f"{m:.2f} ± {s:.2f}"
                paper = PAPER_TABLE2.get(d, {}).get(metric, {}).get(o)
                if paper:
                    cell += f" / {paper[0]:.2f} ± {paper[1]:.2f}"
                cells.append(cell)
            lowest = floor.get(d, {}).get(metric)
            cells.append("—" if not lowest else f"{lowest[0]:.2f}" if metric == "gnelbo" else f"{lowest[0]:.2f} ± {lowest[1]:.2f}")
            name = "jsd (textbook)" if metric == "jsd_textbook" else metric
            lines.append(f"| {d} | {name} | " + " | ".join(cells) + " |")
    runs = results.get("runs", {})
    seconds = sum(r["train_seconds"] + r["eval_seconds"] for r in runs.values())
    lines += ["", f"Total time: {seconds:.0f} s of training and evaluation, summed over the {len(runs)} cells:", ""]
    for key, r in runs.items():  # evaluation always on the CPU; training where the cell says
        lines.append(f"- {key}: training {r['train_seconds']:.0f} s on {r.get('device', 'cpu')}, evaluation {r['eval_seconds']:.0f} s")
    lines.append("")
    return "\n".join(lines)


def table2_grid(models: Mapping[tuple[str, str], Any], datasets: Sequence[str], objectives: Sequence[str], path: Path, n_pts: int = 256, n_samples: int = 2000) -> Path:
    """Rows: datasets; columns: real data, then per objective samples and density (Figure 2).
    Only datasets and objectives with a finished cell are drawn; a cell still missing is left
    blank with "not finished" (a report while the table is computed)."""
    from genvae.viz.points import draw_density, draw_scatter, grid_values, plt

    datasets = [d for d in datasets if any((d, o) in models for o in objectives)]
    objectives = [o for o in objectives if any((d, o) in models for d in datasets)]
    cols = 1 + 2 * len(objectives)
    fig, axes = plt.subplots(max(len(datasets), 1), cols, figsize=(2.2 * cols, 2.2 * max(len(datasets), 1)), squeeze=False)
    for i, d in enumerate(datasets):
        data = None
        for j, o in enumerate(objectives):
            title = (f"{LABELS[o]} samples", f"{LABELS[o]} density") if i == 0 else ("", "")
            if (d, o) not in models:
                for k, ax in enumerate(axes[i][1 + 2 * j : 3 + 2 * j]):
                    ax.set_axis_off()
                    ax.set_title(title[k], fontsize=10)
                    ax.text(0.5, 0.5, "not finished", ha="center", va="center", color="grey", transform=ax.transAxes)
                continue
            (enc, dec), data = models[(d, o)]
            scale = float(getattr(data, "plot_scale", 2.0))
            with torch.no_grad():
                fake = generated_samples(dec, sum(enc.latent_groups.values()), n_samples, 1)
            draw_scatter(axes[i][1 + 2 * j], fake, scale, "tab:green", title[0])
            dens = grid_values(lambda x: elbo_energy(enc, dec, x), scale, n_pts)
            draw_density(axes[i][2 + 2 * j], dens, scale, title[1])
        scale = float(getattr(data, "plot_scale", 2.0))
        draw_scatter(axes[i][0], real_samples(data, n_samples, 0), scale, "tab:blue", "real" if i == 0 else "")
        axes[i][0].set_ylabel(d)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["PAPER_TABLE2", "run_table2", "train_batched", "evaluate_members", "table2_markdown"]
