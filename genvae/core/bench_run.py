"""Benchmarks that train many runs can be run again after a crash or Ctrl-C: each run directory
that holds a checkpoint of the same settings continues from it, and a finished one is only
evaluated again."""

from __future__ import annotations

import json
import shutil
import signal
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from genvae.core.checkpoint import find_checkpoint
from genvae.core.config import to_jsonable
from genvae.core.run import with_added_options
from genvae.errors import RunDirError

BENCH_CHECKPOINT_EVERY = 1000
# Train settings that do not change what is learned (compile: only to float rounding); a bench
# run may continue under other values, and a saved result from before such a key existed is reused.
BOOKKEEPING = ("checkpoint_every", "figures_every", "log_every", "compile", "log_with", "eval_every", "eval", "eval_options")


def run_in_workers(fn: Callable[[Any], Any], tasks: Sequence[Any], jobs: int, done: Callable[[int, Any], None]) -> None:
    """``done(i, fn(tasks[i]))`` for every task as it finishes, ``jobs`` at a time in spawned worker
    processes (safe with CUDA). When the bench stops early (Ctrl-C, SIGTERM, a task's error), so do
    the workers: a pool would otherwise run every pending task first, or outlive a bench killed
    by SIGTERM."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    futures: dict[Any, int] = {}
    try:
        futures = {pool.submit(_until_interrupted, fn, t): i for i, t in enumerate(tasks)}
        for future in as_completed(futures):
            done(futures[future], future.result())
    except BaseException as exc:
        stop_workers(pool, list(futures), grace_s=CTRL_C_GRACE_S if ctrl_c(exc) else 0.0)
        raise
    finally:
        pool.shutdown(wait=True)


_worker_interrupted = False  # in a worker process: Ctrl-C reached it


def _until_interrupted(fn: Callable[[Any], Any], task: Any) -> Any:
    """fn(task) in a worker, unless Ctrl-C reached the worker before: then the task it was handed
    ahead (a pool queues one more than it runs) is not started."""
    global _worker_interrupted
    if _worker_interrupted:
        raise KeyboardInterrupt
    try:
        return fn(task)
    except KeyboardInterrupt:
        _worker_interrupted = True
        raise


CTRL_C_GRACE_S = 30.0  # a terminal's Ctrl-C reaches the workers too: time for each to save its step


def ctrl_c(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C (SIGINT), which a terminal sends to every process of the bench."""
    return isinstance(exc, KeyboardInterrupt) and getattr(exc, "signum", signal.SIGINT) == signal.SIGINT


def stop_workers(pool: Any, futures: Sequence[Any], grace_s: float) -> None:
    """Drop the pool's tasks not started, give the running ones ``grace_s`` seconds to end by
    themselves (after their own Ctrl-C: a second signal would stop a worker saving its step before
    its checkpoint), then SIGTERM the workers (a training run saves its step and stops; a batched
    cell keeps its last checkpoint), and SIGKILL one still alive a minute later."""
    workers = list((pool._processes or {}).values())  # no public handle on them before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not all(f.done() for f in futures) and any(w.is_alive() for w in workers):
        time.sleep(0.1)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(timeout=60)
        if worker.is_alive():
            worker.kill()


def bookkeeping_keys(train_section: str) -> tuple[str, ...]:
    """The dotted keys of BOOKKEEPING under ``train_section`` ("train", "resolved.train"), for
    ``settings_change(ignore=...)``."""
    return tuple(f"{train_section}.{k}" for k in BOOKKEEPING)


def continue_or_start(run_dir: Path, config: dict[str, Any]) -> bool:
    """Whether the bench continues ``run_dir`` (so a rerun after a crash or Ctrl-C loses at most
    ``BENCH_CHECKPOINT_EVERY`` steps, and a finished run is evaluated, not retrained).

    True when it holds a checkpoint of the same settings; False for a fresh start, after removing
    a directory that never reached a checkpoint (nothing trained is lost). Other settings: error."""
    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        return False

    saved = with_added_options(json.loads(saved_path.read_text()))
    change = settings_change(saved, config, ignore=bookkeeping_keys("train"))
    if change:
        raise RunDirError(f"{run_dir} holds a run with other settings ({change}); "
                          f"pass the saved ones, choose another --out or remove that directory")  # fmt: skip
    if find_checkpoint(run_dir) is None:
        shutil.rmtree(run_dir)
        return False
    return True


def settings_for(objective: str, overrides: Sequence[str], objectives: Sequence[str]) -> list[str]:
    """The ``--set`` strings that apply to ``objective`` in a bench that trains all of
    ``objectives``: an ``objective.KEY`` that it lacks but another of them has (``gamma_r`` or
    ``beta_neg`` for soft-intro beside vae) is left out for it. Everything else is kept, so a key
    that no objective has still fails as a typo."""
    from genvae.core.config import parse_override
    from genvae.core.plugins import get_plugins

    objective_plugins = get_plugins().objectives

    def options(name: str) -> set[str]:
        return {f.name for f in fields(objective_plugins.get(name).Config)}

    own = options(objective)
    others = set().union(*(options(o) for o in objectives if o != objective))
    kept = []
    for text in overrides:
        section, key, _ = parse_override(text)
        if not (section == "objective" and key not in own and key in others):
            kept.append(text)
    return kept


def left_out_note(bench: str, objective: str, overrides: Sequence[str], kept: Sequence[str]) -> str | None:
    """The line a bench logs when :func:`settings_for` left options out for ``objective``."""
    left_out = [text.split("=", 1)[0] for text in overrides if text not in kept]
    return f"{bench} bench: {objective} has no option {', '.join(left_out)}; its runs go without" if left_out else None


def flat_settings(c: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as JSON values under dotted keys."""
    out = {}
    for key, value in c.items():
        name = f"{prefix}{key}"
        out.update(flat_settings(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return out


def _settings(c: Mapping[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in flat_settings(json.loads(json.dumps(to_jsonable(c)))).items() if k not in ignore}


def differing_settings(saved: Mapping[str, Any], wanted: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """The dotted keys (``section.key``, ``resolved.train.steps``, ...) whose values differ,
    compared as JSON."""
    a, b = _settings(saved, ignore), _settings(wanted, ignore)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def settings_change(saved: Mapping[str, Any], wanted: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> str:
    """What differs, as ``key: saved value, now value`` ("" when nothing does). The settings a
    bench call is given come first; the derived ``resolved.*`` keys are named only when nothing
    else differs (then a changed default or dataset recommendation is the cause)."""
    a, b = _settings(saved, ignore), _settings(wanted, ignore)
    differ = differing_settings(saved, wanted, ignore)
    given = [k for k in differ if not k.startswith("resolved.")]
    return "; ".join(f"{k}: {a.get(k, '(none)')} saved, {b.get(k, '(none)')} now" for k in given or differ)


def resumed_at(trained: Any, resume: bool) -> int | None:
    """The step a continued bench run started from; None when it was trained from scratch."""
    return trained.step - trained.steps_run if resume else None


def resume_note(resumed_at: int | None, steps: int) -> str:
    """How a bench run came to be, for logs and tables ("" when trained from scratch)."""
    if resumed_at is None:
        return ""
    return "trained by an earlier call" if resumed_at >= steps else f"continued from step {resumed_at}"
