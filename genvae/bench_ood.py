"""A row of the paper's Table 7 (Section 6.5, Appendix 9.7; by default Fashion-MNIST → MNIST):
VAE and Soft-IntroVAE trained on the in-distribution data, 3 seeds, each scored by likelihood on
both test splits (``genvae.plugins.metrics.ood``); the AUROCs beside the paper's, and the histograms.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from genvae.core.bench_run import (
    BENCH_CHECKPOINT_EVERY,
    continue_or_start,
    left_out_note,
    resume_note,
    resumed_at,
    run_in_workers,
    settings_for,
)
from genvae.errors import ConfigError, DataError
from genvae.plugins.metrics.ood import DEFAULT_SAMPLES, PAPER_TABLE7, evaluate_ood, open_eval_data


def _training_flags(task: Mapping[str, Any]) -> dict[str, Any]:
    return {"objective.name": task["objective"], "arch.name": task["arch"], "data.name": task["in_data"], "train.steps": task["steps"],
            "train.seed": task["seed"], "train.batch_size": task["batch_size"]}  # fmt: skip


def _resolved(task: Mapping[str, Any]) -> tuple[Any, Any]:
    from genvae.core.config import merge_user
    from genvae.core.run import resolve

    sets = [f"train.checkpoint_every={BENCH_CHECKPOINT_EVERY}", "train.figures_every=0", *task["overrides"]]
    return resolve(merge_user(None, sets, _training_flags(task)))


def check_pair(task: Mapping[str, Any], data: Any) -> None:
    """Before any training: the out-of-distribution data opens and has the shape of ``data``, the
    in-distribution data (else the scoring would fail only after hours of training)."""
    ood, label = open_eval_data(task["out_data"], data, "test")
    if tuple(ood.shape) != tuple(data.shape):
        pairs = ", ".join(f"{a} -> {b}" for a, b in PAPER_TABLE7)
        raise DataError(f"OOD data {label!r} has shape {tuple(ood.shape)} but {task['in_data']!r} has {tuple(data.shape)}; "
                        f"pick datasets of one shape (the paper's pairs: {pairs})")  # fmt: skip


def _bench_member(task: Mapping[str, Any]) -> dict[str, Any]:
    """Train one (objective, seed) of the OOD benchmark and evaluate it (runs in a worker process
    when the benchmark has several jobs)."""
    from genvae.core.run import load_run
    from genvae.core.trainer import train

    if task["threads"]:
        torch.set_num_threads(task["threads"])
    cfg, data = _resolved(task)
    run_dir = Path(task["out"]) / f"{task['objective']}-seed{task['seed']}"
    resume = continue_or_start(run_dir, cfg.to_dict())
    t0 = time.perf_counter()
    trained = train(cfg, data, run_dir, progress=task["progress"], resume=resume)
    train_s = time.perf_counter() - t0
    res = evaluate_ood(load_run(run_dir), out_data=task["out_data"], score=task["score"], samples=task["samples"], n=task["n"], seed=task["seed"])
    res.pop("_scores")
    res.update(train_seconds=round(train_s, 1), steps=trained.step, resumed_at=resumed_at(trained, resume))
    return res


def run_bench_ood(
    out_dir: str | Path,
    steps: int,
    seeds: int = 3,
    objectives: tuple[str, ...] = ("vae", "soft-intro"),
    in_data: str = "fashion-mnist",
    out_data: str = "mnist",
    arch: str = "residual",
    score: str = "elbo",
    samples: int = DEFAULT_SAMPLES,
    n: int | None = None,
    batch_size: int | None = None,
    overrides: list[str] | None = None,
    progress: bool = False,
    jobs: int = 1,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Train each objective on ``in_data`` for ``steps`` steps with ``seeds`` seeds (the dataset's
    recommended settings otherwise), score ``in_data`` test vs ``out_data`` test, and write
    ``results.json``, ``table.md`` (beside the paper's Table 7) and the histograms under ``out_dir``.

    ``jobs`` > 1 trains that many runs at once in worker processes of one torch thread each
    (the runs are independent; each one's result does not depend on ``jobs``). Runs already under
    ``out_dir`` with the same settings continue from their checkpoint (see :func:`genvae.core.bench_run.continue_or_start`)."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tasks = [{"objective": o, "seed": seed, "steps": steps, "arch": arch, "in_data": in_data, "out_data": out_data,
              "batch_size": batch_size, "overrides": settings_for(o, overrides or [], objectives), "out": str(out), "score": score, "samples": samples,
              "n": n, "progress": progress and jobs == 1, "threads": 1 if jobs > 1 else None}
             for o in objectives for seed in range(seeds)]  # fmt: skip
    for task in {t["objective"]: t for t in tasks}.values():  # every objective's settings, before any training
        _, data = _resolved(task)
        if log and (note := left_out_note("ood", task["objective"], overrides or [], task["overrides"])):
            log(note)
    if tasks:
        check_pair(tasks[0], data)  # the in-distribution data is the same for every objective

    def done(t: Mapping[str, Any], r: Mapping[str, Any]) -> None:
        if log:
            note = resume_note(r.get("resumed_at"), r["steps"])
            how = note if r.get("resumed_at") == r["steps"] else f"{note or 'trained'}, {r['train_seconds']:.0f} s"
            log(f"ood bench: {t['objective']} seed {t['seed']}: AUROC {r['auroc']:.4f} ({how}; scored in {r['seconds']:.0f} s)")

    results: list[Any] = [None] * len(tasks)
    if jobs == 1:
        for i, t in enumerate(tasks):
            results[i] = _bench_member(t)
            done(t, results[i])
    else:
        if log:
            log(f"ood bench: {len(tasks)} runs of {steps} steps, {jobs} at a time (results appear as runs finish)")

        def finished(i: int, result: Any) -> None:
            results[i] = result
            done(tasks[i], result)

        run_in_workers(_bench_member, tasks, jobs, finished)
    rows: dict[str, list[dict[str, Any]]] = {o: [r for t, r in zip(tasks, results) if t["objective"] == o] for o in objectives}
    paper = PAPER_TABLE7.get((in_data, out_data.split(":")[0]), {})
    summary = {o: {"mean": float(np.mean([r["auroc"] for r in rs])), "std": float(np.std([r["auroc"] for r in rs])),
                   "runs": [r["auroc"] for r in rs]} for o, rs in rows.items()}  # fmt: skip
    lines = [
        f"# OOD detection: {in_data} (in) vs {out_data} (out), AUROC of the {score} (M={samples})",
        "",
        f"{steps} training steps per run, {seeds} seed{'' if seeds == 1 else 's'}, arch {arch}{', settings ' + ' '.join(overrides) if overrides else ''}"
        f"{'' if n is None else f', {n} images scored per split'}. "
        f"Paper: Table 7 (ELBO score, full training). Wall time {time.perf_counter() - started:.0f} s with {jobs} job(s).",
        "",
        "| objective | ours: AUROC mean ± std | runs | paper Table 7 |",
        "|---|---|---|---|",
    ]
    for o, s in summary.items():
        p = paper.get(o)
        mean = f"{s['mean']:.4f} ± {s['std']:.4f}" if len(s["runs"]) > 1 else f"{s['mean']:.4f}"  # one seed has no spread
        lines.append(f"| {o} | {mean} | {', '.join(f'{a:.4f}' for a in s['runs'])} | "
                     f"{f'{p[0]} ± {p[1]}' if p else '—'} |")  # fmt: skip
    lines += ["", "Histograms (paper Figure 8): " + ", ".join(f"`{Path(r['figure']).relative_to(out)}`" for rs in rows.values() for r in rs if 'figure' in r)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    result = {"summary": summary, "paper": {o: list(v) for o, v in paper.items()}, "runs": rows, "steps": steps, "seeds": seeds,
              "arch": arch, "overrides": list(overrides or []), "jobs": jobs, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
