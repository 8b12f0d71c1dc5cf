"""Errors a user can meet. The CLI prints them as one line and exits with code 2.

Messages are written for the command line (``--steps``, ``--set optim.lr=...``). Within a call
of the Python API (:func:`python_api`) a message is translated when the error is made: each CLI
flag becomes the argument a Python caller passes (``steps=``, ``settings={"optim.lr": ...}``,
``resume=True``), so that no message is written twice. Flags with a value are written
``--flag=value`` or ``--flag PLACEHOLDER``; quoted commands (``'genvae eval fid-ref ...'``) are
left as they are."""

from __future__ import annotations

import functools
import re
import shlex
from contextvars import ContextVar
from typing import Any, Callable, TypeVar

_PYTHON_CALLER: ContextVar[bool] = ContextVar("genvae_python_caller", default=False)

# CLI flag -> what a Python caller passes: an argument of genvae.train / genvae.evaluate (a metric
# option), or a dotted setting (given in train's settings={...})
PYTHON_NAMES = {
    "--run-dir": "run_dir", "--resume": "resume=True", "--steps": "steps", "--seed": "seed", "--batch-size": "batch_size",
    "--objective": "objective", "--arch": "arch", "--data": "data", "--config": "config",
    "--precision": "train.precision", "--eval": "train.eval", "--eval-every": "train.eval_every", "--log-with": "train.log_with",
    "--out": "out", "--ood": "out", "--in": "in_data", "--num-images": "n", "--samples": "samples", "--score": "score",
    "--split": "split", "--num-samples": "num_samples", "--ref": "ref", "--features": "features",
    "--feature-weights": "feature_weights", "--inception-weights": "inception_weights", "--resize": "resize", "--report": "report=True",
}  # fmt: skip

_QUOTED_COMMAND = re.compile(r"('genvae [^']*')")
_EVAL_COMMAND = re.compile(r"'genvae eval (\w+)'")  # a metric's command alone; not 'genvae eval fid-ref ...'
_RESUME_COMMAND = re.compile(r"genvae train --run-dir ('[^']*'|\S+) --resume((?: --set \S+)?)")
_SET = re.compile(r"--set (?:'([\w.{}]+=[^']*)'|([\w.{}]+=\S*?))(?=[;,)]*(?:\s|$))")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)(?:=(\S+?)(?=[;,)]*(?:\s|$))| ([A-Z][A-Z0-9_]*(?:\.\w+)?)\b)?")


def worded(message: str) -> str:
    """``message`` as the caller should read it: for the Python API's callers, with Python names."""
    return for_python(message) if from_python() else message


def from_python() -> bool:
    """Whether genvae was called through its Python API (not the command line)."""
    return _PYTHON_CALLER.get()


def for_python(message: str) -> str:
    """A CLI message with each flag in :data:`PYTHON_NAMES` replaced by its Python argument."""
    parts = _QUOTED_COMMAND.split(_EVAL_COMMAND.sub(r"genvae.evaluate(run, '\1')", message))
    for i in range(0, len(parts), 2):  # the odd parts are quoted commands
        text = _RESUME_COMMAND.sub(_resume_call, parts[i])
        text = _SET.sub(lambda m: _settings(m.group(1) or m.group(2)), text)
        text = text.replace("} settings={", ", ")  # --set A --set B: one dict
        parts[i] = _FLAG.sub(_argument, text)
    return "".join(parts)


def _resume_call(match: re.Match[str]) -> str:
    settings = f", {_settings(match.group(2)[len(' --set '):])}" if match.group(2) else ""
    return f"genvae.train({shlex.split(match.group(1))[0]!r}, resume=True{settings})"


def _settings(assignment: str) -> str:
    key, _, value = assignment.partition("=")
    return f"settings={{{key.strip()!r}: {_python_value(value)}}}"


def _python_value(text: str) -> str:
    if text in ("...", "") or re.fullmatch(r"[A-Z][A-Z0-9_]*(?:\.\w+)?", text):  # a placeholder: VALUE, N, FILE.npy, ...
        return text or "..."
    from genvae.core.config import parse_key_value

    return repr(parse_key_value(f"v={text}")[1])


def _argument(match: re.Match[str]) -> str:
    name = PYTHON_NAMES.get(match.group(1))
    if name is None:
        return match.group(0)
    value = match.group(2) or match.group(3)  # --flag=value, --flag PLACEHOLDER
    if "." in name:  # a setting without a flag of its own in the API
        return _settings(f"{name}={value or '...'}")
    return f"{name}={_python_value(value)}" if value else name


F = TypeVar("F", bound=Callable[..., Any])


def python_api(func: F) -> F:
    """A public Python API function: the errors and warnings made while it runs name Python
    arguments instead of CLI flags (``func.__wrapped__`` is the function for the CLI's use)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _PYTHON_CALLER.set(True)
        try:
            return func(*args, **kwargs)
        finally:
            _PYTHON_CALLER.reset(token)

    return wrapper  # type: ignore[return-value]


class GenvaeError(Exception):
    """Base class: the message says what was wrong and what to do."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (worded(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(GenvaeError):
    """A configuration key or value is invalid."""


class PluginError(GenvaeError):
    """An unknown plugin name, a name clash, or a broken plugin."""


class RunDirError(GenvaeError):
    """The run directory is missing, incomplete, or already exists."""


class DataError(GenvaeError):
    """Data files are missing or unreadable."""


class NonFiniteLossError(GenvaeError):
    """A loss term became inf or NaN during training."""


class EvaluationError(GenvaeError):
    """An evaluation during training (``train.eval``) failed; training stopped at a checkpoint."""


class DataChangedWarning(UserWarning):
    """A resumed run's data has the size it was trained on but other content."""


class TrainingAdvice(UserWarning):
    """A dataset's advice on how to train on it (e.g. images smaller than the resolution asked
    for): shown when a run is set up, not each time a trained run is reopened."""


def require_positive(section: str, **sizes: int) -> None:
    """Refuse layer widths / latent sizes below 1 (``section.name must be a positive integer``)."""
    for name, value in sizes.items():
        if int(value) < 1:
            raise ConfigError(f"{section}.{name} must be a positive integer, got {value}")


def shell_quote(path: object) -> str:
    """A path as one shell word, for the commands that messages tell the user to run."""
    import shlex

    return shlex.quote(str(path))
