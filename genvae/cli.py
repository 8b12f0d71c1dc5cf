"""The ``genvae`` command line. Thin: it parses, then calls the core. Torch is imported lazily
inside the commands so that ``genvae --help`` is instant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from genvae.commands.bench import bench_app
from genvae.commands.common import EVAL_DATA, LABEL, RUN_DIR, SPLIT, class_index, console, err_console, load_image_run, print_table, user_errors
from genvae.commands.evaluate import eval_app
from genvae.commands.once_only import OnceOnlyGroup
from genvae.commands.plugin_new import new_plugin
from genvae.commands.reconstruct import reconstruct

app = typer.Typer(
    cls=OnceOnlyGroup,
    name="genvae",
    help="Train and evaluate VAE, IntroVAE and Soft-IntroVAE models. Plugins add objectives, architectures, datasets and metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

plugins_app = typer.Typer(cls=OnceOnlyGroup, help="Inspect installed plugins, or start a new one.", no_args_is_help=True)
plugins_app.command("new")(new_plugin)
app.add_typer(plugins_app, name="plugins")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"genvae {version('genvae')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


def training_device() -> str:
    """Where training runs, as Accelerate chose it (set by `accelerate launch` / CUDA_VISIBLE_DEVICES)."""
    from accelerate import PartialState

    state = PartialState()
    return f"{state.device}" + (f" x {state.num_processes} processes" if state.num_processes > 1 else "")


@app.command()
@user_errors
def train(
    objective: Optional[str] = typer.Option(None, "--objective", "-o", help="Objective plugin, e.g. vae, intro, soft-intro."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Architecture plugin, e.g. mlp (default: the one the dataset recommends, else mlp)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset plugin, e.g. 8gaussians, or a folder of images."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file with \\[train] \\[optim] \\[objective] \\[arch] \\[data] tables, or a run's config.json (or its run directory)."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override one setting: SECTION.KEY=VALUE (repeatable)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (train.steps)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (train.seed)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size per process (train.batch_size)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="no | bf16 | fp16 (train.precision)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the networks (train.compile); worth it for long GPU runs."),
    log_with: Optional[list[str]] = typer.Option(None, "--log-with", help="Experiment tracker, e.g. tensorboard or wandb (repeatable; train.log_with)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate every N steps while training (train.eval_every; 2-D data: toy2d)."),
    evaluations: Optional[list[str]] = typer.Option(None, "--eval", help="Metric to evaluate then, e.g. ood (repeatable; train.eval; options: --set train.eval_options=...)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where to write the run (default runs/<objective>-<arch>-<data>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train a model. Settings: defaults < dataset recommendations < --config < --set < flags."""
    import json

    from genvae.api import default_run_dir, remove_if_empty, user_settings
    from genvae.core.checkpoint import checkpoint_step, find_checkpoint, trained_without_checkpoint
    from genvae.core.denormals import flush_denormals_in_every_thread
    from genvae.core.evaluation import planned_metrics
    from genvae.core.health import run_warning
    from genvae.core.run import parameter_counts_on_meta, resolve
    from genvae.core.run_lock import being_trained, training_process
    from genvae.core.trainer import Trainer, TrainingInterrupted, check_new_run_dir

    flush_denormals_in_every_thread()
    flags = {
        "objective.name": objective,
        "arch.name": arch,
        "data.name": data,
        "train.steps": steps,
        "train.seed": seed,
        "train.batch_size": batch_size,
        "train.precision": precision,
        "train.compile": compile,
        "train.log_with": log_with or None,
        "train.eval_every": eval_every,
        "train.eval": evaluations or None,
    }
    user = user_settings(config, overrides, flags, run_dir, resume)
    cfg, data_source = resolve(user, advice=not resume)
    if dry_run:
        sizes = parameter_counts_on_meta(cfg, data_source)
        console.print_json(json.dumps(cfg.to_dict()))
        if sizes:
            err_console.print(f"dry run: encoder {sizes[0]:,} parameters, decoder {sizes[1]:,}; nothing written", highlight=False)
        return
    made_here = run_dir is None
    if made_here:
        run_dir = default_run_dir(cfg.objective["name"], cfg.arch["name"], cfg.data["name"])
    if not resume:
        check_new_run_dir(run_dir)
    elif holder := training_process(run_dir):  # said before "resuming at step N", which it would not
        raise being_trained(run_dir, holder)
    checkpoint = find_checkpoint(run_dir) if resume else None
    saved_step = checkpoint_step(checkpoint) if checkpoint is not None else None
    console.print(
        f"[bold]genvae[/] {cfg.objective['name']} / {cfg.arch['name']} / {cfg.data['name']}: "
        + (f"resuming at step {saved_step} of {cfg.train.steps}" if saved_step is not None else f"{cfg.train.steps} steps")
        + f", batch {cfg.train.batch_size} on {training_device()} -> {run_dir}"
        + (f"; evaluates {', '.join(planned)} every {cfg.train.eval_every} steps" if (planned := planned_metrics(cfg.train, data_source.kind)) else ""),
        soft_wrap=True,
    )
    num_vae = cfg.objective.get("num_vae")
    if num_vae is not None and cfg.train.steps <= num_vae and (saved_step or 0) < cfg.train.steps:
        err_console.print(
            f"[yellow]warning:[/] train.steps ({cfg.train.steps}) <= objective.num_vae ({num_vae}): the whole run is the "
            f"plain-VAE warm-up; pass more --steps or a smaller --set objective.num_vae=N to train the {cfg.objective['name']} game",
            highlight=False,
            soft_wrap=True,
        )
    if resume and checkpoint is None and trained_without_checkpoint(Path(run_dir), cfg.train.checkpoint_every) is None:
        console.print(f"note: {run_dir} stopped before its first checkpoint; training it again from step 0 with its saved config", highlight=False, soft_wrap=True)
    trainer = None
    try:
        trainer = Trainer(cfg, data_source, run_dir, resume=resume, progress=progress if progress else "lines")
        result = trainer.fit()
    except TrainingInterrupted as exc:
        err_console.print(str(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(code=128 + exc.signum) from None  # 130 after Ctrl-C, 143 after SIGTERM
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        step = trainer.last_checkpoint_step if trainer is not None else None
        if step is None and not (Path(run_dir) / "config.json").is_file():
            err_console.print("interrupted before training started; nothing was written", highlight=False, soft_wrap=True)
        elif step is None:
            err_console.print("interrupted before the first checkpoint; training it again (--resume) starts from step 0", highlight=False, soft_wrap=True)
        else:
            from genvae.errors import shell_quote

            err_console.print(f"interrupted; last checkpoint: step {step}; continue with: genvae train --run-dir {shell_quote(run_dir)} --resume", highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    finally:
        if made_here:
            remove_if_empty(run_dir)  # made empty for this run: gone again if it never started
    if result.steps_run == 0:
        console.print(f"already at step {result.step} of train.steps={cfg.train.steps}; nothing to train (pass --steps N with N > {result.step} to train longer)", highlight=False, soft_wrap=True)
        for path in result.figures:
            console.print(f"  wrote the missing figure {path}", soft_wrap=True)
        return
    speed = result.steps_run / max(result.seconds, 1e-9)
    console.print(f"done: step {result.step} in {result.seconds:.1f} s ({speed:.1f} steps/s); wrote {run_dir}", soft_wrap=True)
    for path in result.figures:
        console.print(f"  {path}")
    if warning := run_warning(run_dir, cfg.objective):
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if "tensorboard" in cfg.train.log_with:
        console.print(f"  curves and figures: tensorboard --logdir {run_dir}", soft_wrap=True)


@app.command()
@user_errors
def sample(
    run: Path = RUN_DIR,
    n: int = typer.Option(1000, "--num-samples", "-n", help="Number of samples."),
    out: Path = typer.Option(Path("samples.pt"), "--out", help="Output file: .pt (tensor), .npy (an array: images as (N, C, H, W), points as rows), .csv (one sample per row) or .png / .jpg (picture)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the prior noise."),
    truncation: float = typer.Option(1.0, "--truncation", help="Style models: truncation psi (e.g. 0.7) towards the average style."),
    mix: int = typer.Option(-1, "--mix", help="Style models: style mixing; style layers from this index on come from a second z."),
    label: Optional[str] = typer.Option(None, "--label", help="Class-conditional runs: draw every sample of this class (an index from 0, or a class name); without it the samples cycle through the classes."),
) -> None:
    """Draw samples from a trained model's prior: z ~ N(0, I), x = D(z) (a class-conditional
    run: x = D(z, y))."""
    import torch

    from genvae.core.interfaces import num_classes_of
    from genvae.core.run import load_run
    from genvae.errors import ConfigError

    if n <= 0:
        raise ConfigError(f"--num-samples must be positive, got {n}")
    if out.suffix.lower() not in (".pt", ".npy", ".csv", ".png", ".jpg", ".jpeg"):
        raise ConfigError(f"--out must end in .pt (a tensor), .npy / .csv (rows) or .png / .jpg (a picture), got {out.name!r}")
    loaded = load_run(run)
    classes = num_classes_of(loaded.encoder)
    y = sample_labels(loaded, run, label, n)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(n, loaded.models.z_dim, generator=generator)
        if truncation != 1.0 or mix >= 0:
            if not hasattr(loaded.decoder, "sample"):
                raise ConfigError(f"--truncation and --mix need a style-based model (--arch style); this run's is {loaded.config.arch['name']!r}")
            if not 0.0 <= truncation <= 1.0:
                raise ConfigError(f"--truncation must be in [0, 1], got {truncation}")
            layers = loaded.decoder.num_style_layers
            if mix >= 0 and not 1 <= mix < layers:  # 0 takes every layer from the second z, `layers` none: no mixing
                raise ConfigError(f"--mix must be in 1..{layers - 1} (the first style layer taken from a second z, of {layers}), got {mix}")
            mix_z = torch.randn(n, loaded.models.z_dim, generator=generator) if mix >= 0 else None
            x = loaded.decoder.sample(z, y, truncation=truncation, mix_z=mix_z, crossover=mix if mix >= 0 else None)
            x = loaded.models.enlarge(x)  # a run stopped before its last growth level
        else:
            x = loaded.models.decode(z, y)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".pt":
        torch.save(x, out)
    elif out.suffix.lower() == ".npy" and x.dim() > 2:  # images keep their shape (N, C, H, W), as the data's arrays
        import numpy as np

        np.save(out, x.numpy())
    elif out.suffix.lower() in (".npy", ".csv"):
        save_rows(x.reshape(n, -1).numpy(), out, getattr(loaded.data, "column_names", []))
    elif classes and label is None and x.dim() == 4:  # a picture of a conditional run: one row per class
        from genvae.viz.images import class_rows_grid, save_grid

        save_grid(class_rows_grid(x, y, classes), out)
    else:
        loaded.data.plot_samples(x, out)
    picture = out.suffix.lower() in (".png", ".jpg", ".jpeg")
    in_turn = f"one row per class, 0..{classes - 1}" if picture else f"classes 0..{classes - 1} in turn"
    of_classes = f" ({in_turn}; --label for one)" if classes and label is None else f" of class {label}" if classes else ""
    console.print(f"wrote {n} samples{of_classes} to {out}", soft_wrap=True)


def sample_labels(loaded: Any, run: Path, label: str | None, n: int) -> Any:
    """The class of each sample: None for an unconditional run; --label's class, or without it
    the classes in turn."""
    import torch

    from genvae.core.interfaces import num_classes_of

    classes = num_classes_of(loaded.encoder)
    if classes and label is None:
        return torch.arange(n) % classes
    index = class_index(loaded, run, label, "sample")
    return None if index is None else torch.full((n,), index)


def save_rows(rows: Any, out: Path, header: list[str]) -> None:
    """Samples as rows: .npy (float32), or .csv with the data's column names when it has them."""
    import numpy as np

    if out.suffix.lower() == ".npy":
        np.save(out, rows)
    else:
        names = header if len(header) == rows.shape[1] else []
        np.savetxt(out, rows, delimiter=",", fmt="%.7g", header=",".join(names), comments="")


app.command("reconstruct")(reconstruct)


@plugins_app.command("list")
@user_errors
def plugins_list() -> None:
    """A table of plugins: distribution, version, what each registers, and errors."""
    from rich.markup import escape
    from rich.table import Table

    from genvae.core.plugins import get_plugins

    plugins = get_plugins()
    table = Table(title="genvae plugins")
    # overflow="fold": a narrow terminal wraps long names, never cuts them off with "…"
    table.add_column("plugin / from", overflow="fold")
    table.add_column("registers", overflow="fold")
    table.add_column("status", overflow="fold")
    for info in sorted(plugins.info.values(), key=lambda i: i.name):
        registers = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(info.registers.items()))
        status = f"[red]broken: {escape(info.error)}[/]" if info.error else "[green]ok[/]"
        source = escape(f"{info.distribution} {info.version}".strip())
        table.add_row(f"{escape(info.name)}\n[dim]{source}[/]", escape(registers) or "-", status)
    print_table(table, highlight=True)


@app.command()
@user_errors
def translate(
    run: Path = typer.Argument(..., metavar="RUN", help="A run trained with a two-encoder (class / content) architecture, e.g. lord."),
    class_from: list[Path] = typer.Option(..., "--class-from", help="Image giving the class (one row each; repeatable)."),
    content_from: list[Path] = typer.Option(..., "--content-from", help="Image giving the content (one column each; repeatable)."),
    out: Path = typer.Option(Path("translation.png"), "--out", help="Output PNG."),
) -> None:
    """The paper's translation grid: cell (i, j) = D(class code of row i, content code of column j)."""
    from genvae.core.run import load_run
    from genvae.translate import write_translation_grid
    from genvae.viz.images import check_picture_out

    check_picture_out(out)
    path = write_translation_grid(load_run(run), class_from, content_from, out)
    console.print(f"wrote {path}", soft_wrap=True)


@app.command()
@user_errors
def interpolate(
    run: Path = typer.Argument(..., metavar="RUN", help="A run trained on images."),
    corners: list[Path] = typer.Argument(..., metavar="CORNERS", help="Four images: top-left, top-right, bottom-left, bottom-right; or one folder (its first four images by name), or one .npy / .npz array of images (its first four)."),
    out: Path = typer.Option(Path("interpolation.png"), "--out", help="Output picture: PNG, or the format its extension names (.jpg, ...)."),
    steps: int = typer.Option(8, "--steps", help="Images per side (the paper: 8, i.e. 7 steps)."),
    label: Optional[str] = LABEL,
) -> None:
    """Appendix 9.4.2: bilinear interpolation between the latent codes of four images (of one
    class, --label, for a class-conditional run)."""
    import torch

    from genvae.commands.reconstruct import array_images, image_files
    from genvae.errors import ConfigError
    from genvae.plugins.datasets.image_array import holds_images
    from genvae.viz.images import INTERPOLATION_CAPTION, check_picture_out, interpolation_grid, load_images, load_readable_images, save_grid

    check_picture_out(out)
    folder = corners[0] if len(corners) == 1 and corners[0].is_dir() else None
    array = corners[0] if len(corners) == 1 and corners[0].is_file() and holds_images(corners[0]) else None
    if folder is not None:
        corners = image_files(corners)
    elif directories := [str(p) for p in corners if p.is_dir()]:
        raise ConfigError(f"{directories[0]} is a directory; interpolate takes four image files (top-left, top-right, "
                          "bottom-left, bottom-right), or one folder to use its first four images")  # fmt: skip
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {steps}")
    if folder is None and array is None and len(corners) != 4:
        raise ConfigError(f"interpolate needs exactly 4 corner images (or one folder or array of images), got {len(corners)}")
    loaded = load_image_run(run, "interpolate")
    y_class = class_index(loaded, run, label, "interpolate")
    if array is not None:  # its first four images
        images, _ = array_images(array, loaded.data.shape, 4)
        if len(images) != 4:
            raise ConfigError(f"interpolate needs 4 corner images, {array} holds {len(images)}")
    elif folder is None:
        images = load_images(corners, loaded.data.shape)
    else:  # its first four readable images
        images, corners = load_readable_images(corners, loaded.data.shape, limit=4)
        if len(corners) != 4:
            raise ConfigError(f"interpolate needs 4 corner images, {folder} has {len(corners)} readable")
    labels = None if y_class is None else torch.full((4,), y_class)
    grid = interpolation_grid(loaded.models, images, steps=steps, labels=labels)
    of_class = "" if label is None else f", all of class {label}"
    console.print(f"wrote {save_grid(grid, out, INTERPOLATION_CAPTION + of_class)}", soft_wrap=True)


@app.command()
@user_errors
def encode(
    run: Path = RUN_DIR,
    data: Optional[str] = EVAL_DATA,
    split: str = SPLIT,
    n: Optional[int] = typer.Option(None, "--num-images", "-n", help="Images to encode (default: the whole split)."),
    out: Path = typer.Option(Path("latents.npz"), "--out", help="Output .npz (mu, logvar, labels); a .png of the same name is drawn beside it."),
) -> None:
    """Posterior means and variances of a dataset, the KL of each latent dimension and the active units."""
    from genvae.core.run import load_run
    from genvae.errors import ConfigError
    from genvae.latents import encode_data, plot_latents, save_encoded, summary

    if out.suffix != ".npz":
        raise ConfigError(f"--out must end in .npz, got {out.name!r}")
    loaded = load_run(run)
    encoded = encode_data(loaded, data, split, n)
    stats = summary(encoded)
    figure = plot_latents(encoded, out.with_suffix(".png"), title=f"{loaded.config.objective['name']}: {run}")
    save_encoded(encoded, out)
    groups = ", ".join(f"{g} {stats[f'active_units_{g}']} of {size}" for g, size in encoded["groups"].items() if f"active_units_{g}" in stats)
    console.print(
        f"encoded {stats['n']} {encoded['items']}: {stats['active_units']} of {stats['z_dim']} latent dimensions active"
        f"{f' ({groups})' if groups else ''}; "
        f"KL {stats['kl']:.2f} nats per {encoded['items'][:-1]}",
        highlight=False, soft_wrap=True,
    )
    console.print(f"wrote {out} and {figure}", soft_wrap=True)


@app.command()
@user_errors
def info(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory, or a directory of runs (one line each)."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON (for scripts)."),
) -> None:
    """What a run holds: its settings, how far it trained and how to go on, its last losses and its evaluations."""
    import json

    from genvae.core.run import runs_below
    from genvae.run_info import info_table, overview, overview_table, run_info

    below = [] if (run / "config.json").is_file() or not run.is_dir() else runs_below(run)
    if below:
        runs = overview(below)
        details, table = runs, overview_table(runs, run)
    else:
        details = run_info(run)
        table = info_table(details)
    if as_json:
        print(json.dumps(details, indent=2, default=str))
    else:
        print_table(table)


@app.command()
@user_errors
def compare(
    runs: list[Path] = typer.Argument(..., metavar="RUN...", help="Two or more run directories, or a directory of runs (all of them)."),
    keys: list[str] = typer.Option([], "--key", "-k", help="Value: logged (rec, kl), or evaluated as METRIC.VALUE (fid.fid, ood.auroc); repeatable; default: all."),
    group_by: list[str] = typer.Option([], "--group-by", "-g", help="Setting whose runs are summarised as mean ± std, e.g. objective.beta_neg (repeatable)."),
    where: list[str] = typer.Option([], "--where", "-w", help="Take each run's latest evaluation of these settings, e.g. out=mnist (repeatable; out, score, ref, split)."),
    fmt: str = typer.Option("table", "--format", help="table (the terminal), md, csv or json (for a paper or a script)."),
    out: Path = typer.Option(Path("compare.png"), "--out", help="Output picture: .png, or .pdf, .svg, .jpg, ..."),
) -> None:
    """Training curves of several runs in one picture (one panel per logged value), and their last
    values and latest evaluations side by side; --group-by summarises seeds."""
    import csv
    import json
    import sys

    from rich.table import Table

    from genvae.compare import compare_runs, csv_lines, table_lines
    from genvae.errors import ConfigError

    if fmt not in ("table", "md", "csv", "json"):
        raise ConfigError(f"--format must be table, md, csv or json, got {fmt!r}")
    result = compare_runs(runs, out, keys, group_by, where)
    header, rows = table_lines(result)
    if fmt == "json":
        print(json.dumps({k: result[k] for k in ("keys", "group_by", "runs", "groups", "figure") if k in result}, indent=2, default=str))
    elif fmt == "csv":
        csv_header, csv_rows = csv_lines(result)
        csv.writer(sys.stdout, lineterminator="\n").writerows([csv_header, *csv_rows])
    elif fmt == "md":
        print("\n".join("| " + " | ".join(line) + " |" for line in [header, ["---"] * len(header), *rows]))
    else:
        table = Table()
        for column in header:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        print_table(table)
    for warning in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if fmt == "table":
        console.print(f"wrote {result['figure']}" if result["figure"] else "no curves to draw (only evaluations): no picture written", soft_wrap=True)
        if result["evaluations"]:
            console.print(f"evaluations recorded too: {', '.join(result['evaluations'])} (add them with --key)", highlight=False, soft_wrap=True)


def add_plugin_commands(argv: list[str]) -> None:
    """Let plugins add sub-commands (``genvae_register_commands``) when ``argv`` names a command
    that is not built in; a broken plugin's hook is reported, not fatal."""
    builtin = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    if not argv or argv[0].startswith("-") or argv[0] in builtin:
        return
    from genvae.core.plugins import get_plugins

    for impl in get_plugins().manager.hook.genvae_register_commands.get_hookimpls():
        try:
            impl.function(app=app)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the CLI down
            err_console.print(f"[yellow]warning:[/] plugin {impl.plugin_name!r} could not add its commands: {exc}")


def main() -> None:
    """Console-script entry point."""
    add_plugin_commands(sys.argv[1:])
    code = run_cli(sys.argv[1:])
    if code == 0 and "torch.distributed" in sys.modules:  # after a failure the others may never reach the barrier
        from genvae.core.trainer import leave_process_group

        leave_process_group()
    sys.exit(code)


def run_cli(args: list[str]) -> int:
    """Run the app on ``args`` and return its exit code. A usage mistake (an unknown option, a value
    of the wrong type, a missing argument) is one line naming the command's help, like genvae's
    own errors, instead of Click's usage block and boxed message."""
    try:
        from typer._click import exceptions  # typer >= 0.22 vendors click
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions  # type: ignore[no-redef]

    try:
        result = app(args=args, prog_name="genvae", standalone_mode=False)
    except exceptions.ClickException as exc:
        no_args_help = getattr(exceptions, "NoArgsIsHelpError", ())
        if isinstance(exc, exceptions.UsageError) and not isinstance(exc, no_args_help):
            message = exc.format_message().rstrip(".")
            help_hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            err_console.print(f"[bold red]error:[/] {message}{help_hint}", highlight=False, soft_wrap=True)
        else:
            exc.show()
        return exc.exit_code
    except exceptions.Abort:
        err_console.print("aborted", highlight=False)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    main()
    sys.exit(0)
