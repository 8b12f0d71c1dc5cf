"""``genvae bench ...``: reproduce the paper's tables and figures with one command each."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from genvae.commands.common import console, err_console, user_errors
from genvae.commands.once_only import OnceOnlyGroup

bench_app = typer.Typer(cls=OnceOnlyGroup, help="Reproduce the paper's experiments (tables and figures).", no_args_is_help=True)


class BenchTerminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a job scheduler) arrived while a bench ran outside a training
    loop (which stops at the end of its step itself): it ends the bench as Ctrl-C does."""

    signum = signal.SIGTERM


def _terminated(signum: int, frame: Any) -> None:
    raise BenchTerminated()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises BenchTerminated inside the block (by default it would end the process without
    a word); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def continues_after_interrupts(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Ctrl-C or SIGTERM in a bench ends with one line saying that the same command continues."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with sigterm_interrupts():
                return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)  # TrainingInterrupted and BenchTerminated carry theirs
            err_console.print("interrupted; run the same bench command again to continue: finished runs and cells are reused, "
                              "an unfinished one continues from its last checkpoint", highlight=False, soft_wrap=True)  # fmt: skip
            raise typer.Exit(code=128 + signum) from None

    return wrapper


@bench_app.callback()
def _before_any_bench() -> None:
    from genvae.core.denormals import flush_denormals_in_every_thread

    flush_denormals_in_every_thread()  # benches train


def _seeds(seeds: int) -> int:
    from genvae.errors import ConfigError

    if seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {seeds}")
    return seeds


def say(text: str) -> None:
    """A bench's progress line or table, unbroken however narrow the terminal or when redirected."""
    console.print(text, soft_wrap=True, markup=False)


@bench_app.command("table2")
@user_errors
@continues_after_interrupts
def table2(
    out: Path = typer.Option(Path("results/table2"), "--out", help="Output directory."),
    steps: int = typer.Option(30_000, "--steps", help="Training steps per run (the paper: 30,000)."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds per (dataset, objective)."),
    datasets: Optional[list[str]] = typer.Option(None, "--data", help="Datasets (default: the paper's four)."),
    objectives: Optional[list[str]] = typer.Option(None, "--objective", help="Objectives (default: vae, intro, soft-intro)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda[:N] or auto (the GPU when one is visible)."),
    report: bool = typer.Option(False, "--report", help="Train nothing: write the table and figure of the cells finished so far."),
    jobs: int = typer.Option(1, "--jobs", help="Cells trained at once, one process each (a GPU is kept busy only by several at once)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the batched step (CUDA graphs on a GPU); same results to float rounding."),
    overrides: list[str] = typer.Option([], "--set", help="Override a setting: arch.KEY=VALUE (e.g. arch.depth=3), or objective.KEY=VALUE over Table 5's (it goes to the objectives that have it)."),
) -> None:
    """Table 2: VAE, IntroVAE and Soft-IntroVAE on the 2-D datasets (KL, JSD, gnELBO), batched.

    After a crash or Ctrl-C, the same command reuses the finished cells kept in OUT/cells and continues the unfinished one from its last checkpoint (every 1,000 steps)."""
    from genvae.bench2d import DATASETS, OBJECTIVES, run_table2, table2_overrides

    objectives = objectives or list(OBJECTIVES)
    arch, objective_overrides = table2_overrides(overrides, objectives, log=say)
    run_table2(out, steps=steps, seeds=_seeds(seeds), datasets=datasets or DATASETS, objectives=objectives, log=say, device=device,
               train_missing=not report, jobs=jobs, compile=compile, arch=arch, objective_overrides=objective_overrides)  # fmt: skip
    say((out / "table2.md").read_text())


@bench_app.command("stability")
@user_errors
@continues_after_interrupts
def stability(
    out: Path = typer.Option(Path("results/stability"), "--out", help="Output directory."),
    steps: int = typer.Option(30_000, "--steps", help="Training steps per run."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds per configuration."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda[:N] or auto (the GPU when one is visible)."),
    models: Optional[list[str]] = typer.Option(None, "--model", help="Train only this one of intro, soft-intro (e.g. one per process); default both."),
    margins: Optional[list[float]] = typer.Option(None, "--m", help="IntroVAE margins m (repeatable; default 1, 2, ..., 10 as Figure 3)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the batched step (CUDA graphs on a GPU); same results to float rounding."),
    report: bool = typer.Option(False, "--report", help="Train nothing: write the figure from the two models, once both are finished."),
    overrides: list[str] = typer.Option([], "--set", help="Override an architecture setting: arch.KEY=VALUE (e.g. arch.depth=3)."),
) -> None:
    """Figure 3: IntroVAE's KL / JSD for margins m = 1..10 against Soft-IntroVAE (8 Gaussians).

    After a crash or Ctrl-C, the same command reuses a model finished earlier and continues an unfinished one from its last checkpoint (every 1,000 steps; OUT/cells)."""
    from genvae.bench2d import arch_overrides
    from genvae.bench_stability import STABILITY_MODELS, run_stability

    ms = margins or tuple(range(1, 11))
    if run_stability(out, steps=steps, seeds=_seeds(seeds), ms=ms, log=say, device=device, models=models or STABILITY_MODELS,
                     compile=compile, report=report, arch=arch_overrides(overrides)) is not None:
        say((out / "stability.md").read_text())
        console.print(f"wrote {out / 'stability.png'} and stability.md", soft_wrap=True)


@bench_app.command("collapse")
@user_errors
@continues_after_interrupts
def collapse(
    out: Path = typer.Option(Path("results/collapse"), "--out", help="Output directory."),
    steps: int = typer.Option(30_000, "--steps", help="Training steps per run."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per model."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda[:N] or auto (the GPU when one is visible)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the batched step (CUDA graphs on a GPU); same results to float rounding."),
    overrides: list[str] = typer.Option([], "--set", help="Override an architecture setting: arch.KEY=VALUE (e.g. arch.depth=3)."),
) -> None:
    """Appendix 9.5 / Figure 21: the VAE's KL collapses, Soft-IntroVAE's does not (8 Gaussians).

    After a crash or Ctrl-C, the same command continues each model from its last checkpoint (every 1,000 steps; OUT/cells)."""
    from genvae.bench2d import arch_overrides
    from genvae.bench_collapse import run_collapse

    run_collapse(out, steps=steps, seeds=_seeds(seeds), log=say, device=device, compile=compile, arch=arch_overrides(overrides))
    console.print(f"wrote {out / 'collapse.png'}", soft_wrap=True)


@bench_app.command("translation")
@user_errors
@continues_after_interrupts
def translation(
    out: Path = typer.Option(Path("results/translation"), "--out", help="Output directory."),
    steps: int = typer.Option(300, "--steps", help="Training steps per model."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
    objectives: Optional[list[str]] = typer.Option(None, "--objective", help="Objectives (default: soft-intro and vae)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a setting: SECTION.KEY=VALUE (an objective option goes to the objectives that have it)."),
) -> None:
    """Section 6.4 without Cars3D: unsupervised class/content transfer on shapes3d-synthetic."""
    from genvae.bench_translation import OBJECTIVES, run_bench_translation

    run_bench_translation(out, steps, seed, objectives=tuple(objectives or OBJECTIVES), overrides=overrides, progress=True, log=say)
    say((out / "translation.md").read_text())


@bench_app.command("ood")
@user_errors
@continues_after_interrupts
def ood(
    out: Path = typer.Option(Path("results/ood"), "--out", help="Output directory."),
    steps: int = typer.Option(1500, "--steps", help="Training steps per model."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per model."),
    in_data: str = typer.Option("fashion-mnist", "--in", help="In-distribution dataset, trained on (its options: --set data.KEY=VALUE)."),
    ood_data: str = typer.Option("mnist", "--ood", help="Out-of-distribution dataset, test split (options as NAME:KEY=VALUE,...)."),
    arch: str = typer.Option("residual", "--arch", help="Architecture."),
    objectives: Optional[list[str]] = typer.Option(None, "--objective", help="Objectives (default: vae and soft-intro)."),
    score: str = typer.Option("elbo", "--score", help="elbo (the paper's Table 7) or iwae."),
    jobs: int = typer.Option(1, "--jobs", help="Runs trained at once, one process and one torch thread each."),
    n: Optional[int] = typer.Option(None, "--num-images", "-n", help="Images scored per split (default: all; 10,000 test images take minutes on a CPU)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a setting: SECTION.KEY=VALUE (an objective option goes to the objectives that have it)."),
) -> None:
    """A Table 7 row, by default Fashion-MNIST -> MNIST: VAE vs Soft-IntroVAE AUROC (needs both datasets' files).

    The paper's other rows: --in mnist --ood fashion-mnist, --in cifar10 --ood svhn, --in svhn --ood cifar10.
    After a crash or Ctrl-C, the same command continues each run from its last checkpoint (every 1,000 steps)."""
    from genvae.bench_ood import run_bench_ood

    run_bench_ood(out, steps, seeds=_seeds(seeds), objectives=tuple(objectives or ("vae", "soft-intro")), in_data=in_data, out_data=ood_data,
                  arch=arch, score=score, n=n, overrides=overrides, progress=True, jobs=jobs, log=say)  # fmt: skip
    say((out / "table.md").read_text())
