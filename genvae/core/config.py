"""Run configuration: dataclass sections, TOML files, ``--set a.b=c`` overrides, JSON on disk.

A run's config has six sections. ``train``, ``optim`` and ``grow`` (progressive growing) are fixed dataclasses; ``objective``,
``arch`` and ``data`` hold a plugin ``name`` plus that plugin's options, validated against the
plugin (an objective's ``Config`` dataclass, an architecture's or dataset's constructor keywords).

Precedence, lowest first: built-in defaults < the dataset's ``recommended`` settings (the
paper's per-dataset hyperparameters) < the ``--config`` file < ``--set`` and CLI flags.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import json
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from genvae.errors import ConfigError, from_python

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package (a dependency there)
    import tomli as tomllib

SECTIONS = ("train", "optim", "grow", "objective", "arch", "data")
PLUGIN_SECTIONS = {"objective": "objective", "arch": "architecture", "data": "dataset"}


@dataclass
class TrainConfig:
    steps: int = 30_000  # optimisation steps (one step = every phase of the objective once)
    batch_size: int = 512  # samples per step per process
    seed: int = 0  # seeds the model, the data stream and the noise
    precision: str = "no"  # mixed precision through Accelerate: no | bf16 | fp16
    conditional: bool = False  # class-conditional model (one-hot labels to encoder and decoder)
    log_every: int = 100  # steps between logged loss values (log.jsonl; 0: only at the end)
    checkpoint_every: int = 1000  # steps between resumable checkpoints (0: only at the end)
    figures_every: int = 0  # steps between figure updates (0: only at the end)
    compile: bool = False  # torch.compile the encoder and decoder for training (same results to float rounding)
    log_with: list[str] = field(default_factory=list)  # experiment trackers, e.g. ["tensorboard"] (RUN/trackers)
    eval_every: int = 0  # steps between evaluations during training (0: none); results in RUN/evals.jsonl
    eval: list[str] = field(default_factory=list)  # metrics evaluated then, e.g. ["ood"] (2-D data: toy2d when empty)
    eval_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per metric, e.g. {ood = {out = "mnist"}}


@dataclass
class OptimConfig:
    lr: float = 2e-4  # Adam learning rate of every part
    lr_encoder: float = 0.0  # overrides lr for the encoder when > 0
    lr_decoder: float = 0.0  # overrides lr for the decoder when > 0
    milestones: list[int] = field(default_factory=list)  # MultiStepLR steps where lr *= gamma
    gamma: float = 0.1  # MultiStepLR factor
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam's (beta1, beta2)
    grad_clip: float = 0.0  # max gradient norm per part (0: no clipping)


DEFAULT_NAMES = {"objective": "soft-intro", "arch": "mlp", "data": "8gaussians"}


# --------------------------------------------------------------------------------------------
# Reading user input
# --------------------------------------------------------------------------------------------


CONFIG_FORMATS = "genvae reads TOML config files, or a run's config.json"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML file, or a run's ``config.json`` (to train again with the same settings); a run
    directory stands for its config.json."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"config file {str(path)!r} is a directory; give a TOML file, or a run directory (one holding config.json)")
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; write it first (the user guide's Train section shows a run.toml), "
                          "or give a run directory to train again with its settings")
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not a UTF-8 text file; {CONFIG_FORMATS}") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({exc.strerror}); check its permissions") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid {kind} ({exc}); {CONFIG_FORMATS}") from None
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(_unknown("config section", key, list(SECTIONS)))
        if not isinstance(data[key], dict):
            raise ConfigError(f"config file {str(path)!r}: [{key}] must be a table")
    return data


def _literal(raw: str) -> Any:
    """A TOML literal, else a bracketed list of such items (``[square, cross]``), else the string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw.startswith("[") and raw.endswith("]") and raw[1:-1].strip():
            return [_literal(item.strip()) for item in raw[1:-1].split(",")]
        return raw


def parse_key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (KEY, VALUE). Values are TOML literals; anything that is not one is taken
    as a string, and brackets around bare words as a list of them."""
    if "=" not in text:
        raise ConfigError(f"{text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    return key.strip(), _literal(raw.strip())


def parse_spec_options(spec: str) -> dict[str, Any]:
    """The options of a ``NAME:KEY=VALUE,KEY=VALUE`` data spec (the part after the colon). A piece
    without ``=`` continues the previous value, so that a path may hold a comma
    (``path=/data/set a,b``); a first piece without one is an error."""
    pieces: list[str] = []
    for piece in spec.split(","):
        if not piece:  # "a=1," or "a=1,,b=2"
            continue
        if "=" in piece or not pieces:
            pieces.append(piece)
        else:
            pieces[-1] += "," + piece
    return dict(parse_key_value(piece) for piece in pieces)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``objective.beta_neg=0.9`` -> ("objective", "beta_neg", 0.9) (values as parse_key_value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. objective.beta_neg=0.9")
    key, value = parse_key_value(text)
    if "." not in key:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. objective.beta_neg=0.9")
    section, name = key.split(".", 1)
    if section not in SECTIONS:
        raise ConfigError(_unknown("config section", section, list(SECTIONS)) + f" (in --set {text!r})")
    return section, name.strip(), value


def merge_user(config_file: str | Path | None, overrides: list[str], flags: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The user's settings as nested dicts: file, then ``--set``, then explicit CLI flags."""
    user: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if config_file:
        for section, values in load_config_file(config_file).items():
            user[section].update(values)
    for text in overrides:
        section, key, value = parse_override(text)
        user[section][key] = value
    for dotted, value in flags.items():
        if value is not None:
            section, key = dotted.split(".", 1)
            user[section][key] = value
    return user


# --------------------------------------------------------------------------------------------
# Validation against dataclasses and signatures
# --------------------------------------------------------------------------------------------


def _unknown(what: str, key: str, valid: list[str], shown: str | None = None) -> str:
    """``unknown option objective.beta_nge; did you mean 'beta_neg'? valid: ...``"""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {what} {shown or repr(key)}{hint} valid: {', '.join(sorted(valid)) or '(none)'}"


def coerce(where: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a type annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return coerce(where, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{where} = {value!r} has the wrong type; expected {_type_name(annotation)}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        inner = args[0] if args else Any
        if isinstance(value, (list, tuple)):
            return [coerce(f"{where}[{i}]", v, inner) for i, v in enumerate(value)]
        if isinstance(value, str) and inner is str:  # --set train.log_with=tensorboard: a list of one
            return [value]
    elif origin in (dict, collections.abc.Mapping) or annotation is dict:
        if isinstance(value, dict):
            inner = args[1] if len(args) == 2 else Any
            return {str(k): coerce(f"{where}.{k}", v, inner) for k, v in value.items()}
    else:
        return value
    quote = ""
    if annotation is str and isinstance(value, (bool, int, float)) and not from_python():  # --set values are TOML: nan, true, 1e3 are not text
        quote = f" (a --set value is read as TOML, where {str(value).lower()} is not text: quote it, --set '{where}=\"TEXT\"')"
    elif annotation is bool:
        quote = " (true or false)"
    raise ConfigError(f"{where} = {value!r} has the wrong type; expected {_type_name(annotation)}{quote}")


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        value = args[1] if len(args) == 2 else Any
        if typing.get_origin(value) in (dict, collections.abc.Mapping):
            return "a table of tables such as {name={a=1.0, b=2.0}}"
        return "a table such as {a=1.0, b=2.0}" + (f" of {_type_name(value)}" if value is not Any else "")
    if origin in (list, tuple):
        return "a list such as [1, 2]" + (f" of {_type_name(args[0])}" if args else "")
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def build_dataclass(section: str, cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in valid:
            raise ConfigError(_unknown("option", key, valid, shown=f"{section}.{key}"))
        kwargs[key] = coerce(f"{section}.{key}", value, hints[key])
    return cls(**kwargs)


def _signature(fn: Any) -> inspect.Signature:
    """``fn``'s signature with its annotations evaluated (``from __future__ import annotations``
    leaves them strings), so that ``list[int]`` checks the items; as written when they cannot be
    (a name imported only for type checkers), and then an option is checked against its default's type."""
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # noqa: BLE001 - NameError, TypeError, ... from evaluating a plugin's annotations
        return inspect.signature(fn)


def signature_options(*callables: Any, skip: tuple[str, ...] = ("self", "data_shape", "num_classes")) -> dict[str, inspect.Parameter]:
    """Keyword options accepted by any of ``callables`` (an architecture's encoder and decoder)."""
    options: dict[str, inspect.Parameter] = {}
    for fn in callables:
        for name, param in _signature(fn).parameters.items():
            if name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            options.setdefault(name, param)
    return options


def validate_options(section: str, plugin_name: str, values: Mapping[str, Any], options: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """Fill defaults from the signature and check every user key and type."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in options:
            raise ConfigError(_unknown(f"{PLUGIN_SECTIONS[section]} option", key, list(options), shown=f"{section}.{key} for {plugin_name!r}"))
        out[key] = coerce(f"{section}.{key}", value, _annotation(options[key]))
    for key, param in options.items():
        if key not in out:
            if param.default is inspect.Parameter.empty:
                raise ConfigError(f"{section}.{key} is required by {plugin_name!r}; set it with --set {section}.{key}=...")
            out[key] = list(param.default) if isinstance(param.default, tuple) else param.default
    return out


def check_option(where: str, value: Any, param: inspect.Parameter) -> Any:
    """``value`` checked against the type of the parameter it is passed to (``coerce``)."""
    return coerce(where, value, _annotation(param))


def _annotation(param: inspect.Parameter) -> Any:
    ann = param.annotation
    if isinstance(ann, str) or ann is inspect.Parameter.empty:  # postponed or no annotation: the default's type
        if param.default is inspect.Parameter.empty or param.default is None:
            return Any
        return type(param.default) if not isinstance(param.default, tuple) else list
    return ann


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temporary file, then rename)."""
    from genvae.core.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    """A run's JSON file (config.json, trainer.json, a component's config.json); a damaged one is a
    RunDirError that names it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        from genvae.core.checkpoint import damaged

        raise damaged(path, f"is not valid JSON ({exc})") from exc
