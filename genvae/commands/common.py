"""What every command module shares: the consoles and the one-line error handling."""

from __future__ import annotations

import difflib
import errno
import functools
import os
import sys
import warnings
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


# parameters that several commands take alike (typer reads these defaults as their declarations)
RUN_DIR = typer.Argument(..., metavar="RUN", help="A run directory written by 'genvae train'.")
EVAL_DATA = typer.Option(None, "--data", help="Dataset (default: the run's), e.g. mnist or folder:path=DIR.")
SPLIT = typer.Option("test", "--split", help="train or test.")


def print_table(table: Any, highlight: bool = False) -> None:
    """A rich table at the terminal's width (a fresh console: it honours COLUMNS of this call);
    off a terminal (a pipe, a file) as wide as the table needs, so that no number is broken
    across lines."""
    out = Console()
    if out.is_terminal or "COLUMNS" in os.environ:
        out.print(table, highlight=highlight)
        return
    wide = Console(width=max(out.width, Console(width=100_000).measure(table).maximum))
    with wide.capture() as captured:
        wide.print(table, highlight=highlight)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))  # no padding to the widest line


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)  # [ood] is text, not markup


def user_errors(fn: F) -> F:
    """Print genvae's user-facing errors as one line and exit with code 2 (no traceback);
    warnings are printed as one line too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from genvae.errors import GenvaeError

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except GenvaeError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except (OSError, MemoryError, RuntimeError) as exc:
            message = environment_error(exc)
            if message is None:
                raise
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


OS_HINTS = {
    errno.ENOSPC: "free some disk space (or write elsewhere)",
    errno.EDQUOT: "free some space within your quota (or write elsewhere)",
    errno.EACCES: "write somewhere you may (another --out / --run-dir), or change the folder's permissions",
    errno.EPERM: "write somewhere you may (another --out / --run-dir), or change the folder's permissions",
    errno.EROFS: "write to another file system (another --out / --run-dir)",
    errno.EISDIR: "a folder stands where genvae writes a file: move it away",
    errno.ENOTDIR: "a file stands where genvae needs a folder: move it away",
    errno.EEXIST: "a file stands where genvae makes a folder: move it away",
}
MEMORY_WORDS = ("can't allocate memory", "not enough memory", "out of memory", "defaultcpuallocator")


def environment_error(exc: BaseException) -> str | None:
    """One line for what the machine refused (a full disk, a read-only folder, a file in the way,
    too little memory), with what to do; None for anything else, which is a bug to show in full."""
    if isinstance(exc, OSError) and exc.errno in OS_HINTS:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}; {OS_HINTS[exc.errno]}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in MEMORY_WORDS)):
        return f"out of memory ({text[:160]}); ask for less at once: fewer samples (-n), a smaller --batch-size or fewer --steps"
    return None


LABEL = typer.Option(None, "--label", help="Class-conditional runs: the class to condition on, an index from 0 or a class name (a labelled folder's subfolder, cifar10's cat, ...).")


def load_image_run(run: Any, command: str) -> Any:
    """:func:`~genvae.core.run.load_run`, refusing a run that was not trained on images."""
    from genvae.core.run import load_run
    from genvae.errors import ConfigError

    loaded = load_run(run)
    if len(loaded.data.shape) != 3:
        raise ConfigError(f"run {run} was not trained on images (data shape {loaded.data.shape}); {command} needs an image run")
    return loaded


def class_index(loaded: Any, run: Any, label: str | None, command: str) -> int | None:
    """The class ``--label`` names (an index, or a name of the run's data), checked against the
    run: None for an unconditional run, which refuses a label; a conditional run needs one
    (image files carry no class)."""
    from genvae.core.interfaces import num_classes_of
    from genvae.errors import ConfigError

    classes = num_classes_of(loaded.encoder)
    if not classes:
        if label is None:
            return None
        raise ConfigError(f"run {run} is not class-conditional, so it takes no class; leave out --label {label}")
    names = [str(name) for name in getattr(loaded.data, "class_names", [])]
    names = names if len(names) == classes else []
    choices = f"an index 0..{classes - 1}" + (f" or a name ({', '.join(names)})" if names else "")
    if label is None:
        raise ConfigError(f"run {run} is class-conditional ({classes} classes) and {command} does not know your images' class; "
                          f"give it with --label: {choices}")  # fmt: skip
    if label in names:  # names first: a folder of classes named 0, 1, 10, 2, ... means the name
        return names.index(label)
    try:
        index = int(label)
    except ValueError:
        close = difflib.get_close_matches(label, names, n=1)
        known = f" (did you mean {close[0]!r}?)" if close else "" if names else " (the run's data names no classes here)"
        raise ConfigError(f"--label {label!r} is no class of run {run}{known}; give {choices}") from None
    if not 0 <= index < classes:
        raise ConfigError(f"--label {index} is out of range: run {run} has {classes} classes; give {choices}")
    return index
