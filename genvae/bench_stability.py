"""The paper's Figure 3: KL and JSD of IntroVAE for each margin m in 1..10 against Soft-IntroVAE
(which has no m) with IntroVAE's other hyperparameters, on the 8 Gaussians; every m and seed is
a member of one batched model (genvae.batched).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from genvae.batched import resolve_device
from genvae.bench2d import Log, as_seed_list, cell_state, evaluated_cell, first_member, mean_std, save_cell, saved_cell, train_batched
from genvae.core.config import write_json
from genvae.errors import ConfigError
from genvae.plugins.datasets.toy2d import TABLE5

STABILITY_MODELS = ("intro", "soft-intro")




def run_stability(
    out_dir: str | Path,
    steps: int = 30_000,
    seeds: int | Sequence[int] = 5,
    ms: Sequence[float] = tuple(range(1, 11)),
    dataset: str = "8gaussians",
    grid_points: int = 256,
    eval_seed: int = 0,
    train: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | None = None,
    soft_intro_overrides: Mapping[str, Any] | None = None,
    log: Log | None = print,
    device: str | None = None,
    models: Sequence[str] = STABILITY_MODELS,
    compile: bool = False,
    report: bool = False,
) -> dict[str, Any] | None:
    """IntroVAE for each m (all m × seeds in one batched model) vs Soft-IntroVAE with IntroVAE's
    other hyperparameters (β_rec, β_kl, β_neg of Table 5); writes stability.json and stability.png.
    Each of the two batched models' results is kept under ``out_dir/cells/`` and reused by a rerun
    with the same settings (as :func:`run_table2`). ``models`` trains only those of the two (e.g.
    one per process or machine); the figure is written, and returned, once both are finished.
    ``report`` trains nothing: only the figure, if both models are finished."""
    unknown = sorted(set(models) - set(STABILITY_MODELS))
    if unknown or not models:
        raise ConfigError(f"stability models must be among {', '.join(STABILITY_MODELS)}, got {', '.join(unknown) or 'none'}")
    if not report:
        resolve_device(device)  # a GPU asked for but absent stops here, before anything is written
    out = Path(out_dir)
    if report and not any((out / "cells" / f"stability-{o}").exists() for o in STABILITY_MODELS):
        raise ConfigError(f"{out} holds neither stability model, finished or training{'' if out.is_dir() else ' (it does not exist)'}: "
                          "there is nothing to report; check --out, or train them with the same command without --report")  # fmt: skip
    if not report:
        out.mkdir(parents=True, exist_ok=True)
    seed_list = as_seed_list(seeds)
    intro = TABLE5[dataset]["intro"]
    t0 = time.perf_counter()
    shared = {k: intro[k] for k in ("beta_rec", "beta_kl", "beta_neg")}
    common = {"dataset": dataset, "steps": steps, "seeds": seed_list, "grid_points": grid_points, "eval_seed": eval_seed,
              "train": dict(train or {}), "arch": dict(arch or {})}  # fmt: skip

    def record_of(objective: str, overrides: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Train and evaluate one batched model, or reuse the record an earlier call saved
        (None: not finished, and ``report`` or not among ``models``)."""
        cell = out / "cells" / f"stability-{objective}"
        settings = {**common, "objective": overrides, "resolved": first_member(objective, dataset, overrides[0], steps, train, arch)[0]}
        record = saved_cell(cell, settings)
        if record is None and (report or objective not in models):
            return None
        if record is None:
            bt = train_batched(objective, dataset, seed_list, steps, overrides=overrides, train=train, arch=arch, log=log, device=device,
                               checkpoint=cell_state(cell, settings), compile=compile)  # fmt: skip
            record = evaluated_cell(bt, eval_seed=eval_seed, grid_points=grid_points)
            save_cell(cell, settings, record)
        elif log:
            log(f"[stability] {objective}: saved by an earlier call, reused")
        return record

    records = {"intro": record_of("intro", [{"m": float(m)} for m in ms]),
               "soft-intro": record_of("soft-intro", [{**shared, **(soft_intro_overrides or {})}])}  # fmt: skip
    if None in records.values():
        if log:
            log(f"[stability] {'intro' if records['intro'] is None else 'soft-intro'} not finished yet: the figure is written once both models are")
        return None
    intro_members, soft_members = records["intro"]["members"], records["soft-intro"]["members"]
    per_m = []
    for i, m in enumerate(ms):
        group = intro_members[i * len(seed_list) : (i + 1) * len(seed_list)]
        per_m.append({"m": float(m), **{k: mean_std([g[k] for g in group]) for k in ("kl", "jsd", "jsd_textbook", "gnelbo")}})
    soft = {k: mean_std([g[k] for g in soft_members]) for k in ("kl", "jsd", "jsd_textbook", "gnelbo")}
    result = {
        "dataset": dataset,
        "steps": steps,
        "seeds": seed_list,
        "intro": per_m,
        "soft_intro": soft,
        "soft_intro_hyperparameters": {**shared, **(soft_intro_overrides or {})},
        "members": {"intro": intro_members, "soft-intro": soft_members},
        # training and evaluation time of each model, from the call that trained it (older cells kept none)
        "cells": {o: {k: r[k] for k in ("train_seconds", "eval_seconds", "device") if k in r} for o, r in records.items()},
        "seconds": time.perf_counter() - t0,  # this call's
    }
    write_json(out / "stability.json", result)
    (out / "stability.md").write_text(stability_table(result))
    _stability_plot(result, out / "stability.png")
    return result


def stability_table(result: Mapping[str, Any]) -> str:
    """The figure's numbers as markdown: mean ± std over the seeds per model and margin."""
    seeds = len(result["seeds"])

    def cells(row: Mapping[str, Any]) -> str:
        return " | ".join(f"{row[k][0]:.2f} ± {row[k][1]:.2f}" if seeds > 1 else f"{row[k][0]:.2f}" for k in ("kl", "jsd", "gnelbo"))

    lines = [f"{result['dataset']}, {result['steps']:,} steps, {seeds} seed{'' if seeds == 1 else 's'}"
             f"{' (mean ± std)' if seeds > 1 else ''}; gnELBO in 1e-7", "",
             "| model | m | KL | JSD | gnELBO |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| IntroVAE | {row['m']:g} | {cells(row)} |" for row in result["intro"]]
    lines.append(f"| Soft-IntroVAE | — | {cells(result['soft_intro'])} |")
    return "\n".join(lines) + "\n"


def _stability_plot(result: Mapping[str, Any], path: Path) -> Path:
    from genvae.viz.points import plt

    ms = [row["m"] for row in result["intro"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key in zip(axes, ("kl", "jsd")):
        mean = [row[key][0] for row in result["intro"]]
        std = [row[key][1] for row in result["intro"]]
        ax.errorbar(ms, mean, yerr=std, marker="o", capsize=3, label="IntroVAE (I-VAE), mean ± std")
        seeds = len(result["seeds"])  # each member too: with a few seeds the spread says more than a std
        values = [member[key] for member in result["members"]["intro"]]
        ax.scatter([m for m in ms for _ in range(seeds)], values, s=12, color="tab:gray", zorder=3, label="IntroVAE, one seed")
        soft_values = [member[key] for member in result["members"]["soft-intro"]]
        ax.scatter([max(ms) + 0.4] * len(soft_values), soft_values, s=12, color="tab:red", zorder=3)
        sm, ss = result["soft_intro"][key]
        ax.axhline(sm, color="tab:red", label="Soft-IntroVAE (S-VAE)")
        ax.fill_between([min(ms), max(ms)], sm - ss, sm + ss, color="tab:red", alpha=0.2)
        ax.set_xlabel("m")
        ax.set_ylabel(key.upper())
        seeds = len(result["seeds"])
        ax.set_title(f"{key.upper()} vs m ({result['dataset']}, {seeds} seed{'' if seeds == 1 else 's'}, {result['steps']:,} steps)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, frameon=False)  # below: the points fill both panels
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
