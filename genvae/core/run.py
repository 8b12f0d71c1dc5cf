"""From a user's settings to live objects, and from a run directory back to a model.

``resolve`` checks the settings against the registered plugins; ``build_models`` makes the
networks; ``load_run`` reopens a finished (or interrupted) run for sampling and evaluation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from genvae.core.checkpoint import COMPONENT_CONFIG, find_checkpoint, load_weights, read_component_config
from genvae.core.config import (
    DEFAULT_NAMES,
    PLUGIN_SECTIONS,
    OptimConfig,
    TrainConfig,
    build_dataclass,
    parse_spec_options,
    read_json,
    signature_options,
    to_jsonable,
    validate_options,
)
from genvae.core.evaluation import check_evaluations
from genvae.core.interfaces import Architecture, DataSource, Decoder, Encoder, Models, Objective, module_device, num_classes_of
from genvae.core.losses import reconstruction_loss
from genvae.core.plugins import Plugins, get_plugins
from genvae.core.progressive import GrowConfig, GrowthSchedule, level_of
from genvae.core.run_lock import training_process
from genvae.core.tracking import check_trackers
from genvae.errors import ConfigError, DataError, GenvaeError, PluginError, RunDirError, TrainingAdvice

PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class ResolvedConfig:
    """A complete, validated run configuration (what ``config.json`` holds)."""

    train: TrainConfig
    optim: OptimConfig
    objective: dict[str, Any]  # {"name": ..., hyperparameters...}
    arch: dict[str, Any]
    data: dict[str, Any]
    grow: GrowConfig = field(default_factory=GrowConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({s: getattr(self, s) for s in ("train", "optim", "grow", "objective", "arch", "data")})

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "ResolvedConfig":
        return ResolvedConfig(
            train=build_dataclass("train", TrainConfig, d["train"]),
            optim=build_dataclass("optim", OptimConfig, d["optim"]),
            objective=dict(d["objective"]),
            arch=dict(d["arch"]),
            data=dict(d["data"]),
            grow=build_dataclass("grow", GrowConfig, d.get("grow", {})),
        )


GIVEN_DATA = "data.npz"  # the array genvae.train(data=array) was given, saved into its run directory


def given_data_here(data: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run's data section, with the array it was given from Python (``RUN/data.npz``) found in
    the run directory where it is now (a run copied or moved elsewhere)."""
    path = data.get("path")
    if path and Path(str(path)).name == GIVEN_DATA and not Path(str(path)).is_file() and (run_dir / GIVEN_DATA).is_file():
        return {**data, "path": str((run_dir / GIVEN_DATA).resolve())}
    return dict(data)


def _options(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "name"}


def data_options(plugins: Plugins, name: str) -> dict[str, Any]:
    return signature_options(plugins.datasets.get(name), skip=("self",))


def arch_options(arch: Architecture) -> dict[str, Any]:
    return signature_options(arch.encoder.__init__, arch.decoder.__init__)


PATH_OPTIONS = ("path", "root")  # data options that name files or folders


def absolute_data_paths(options: Mapping[str, Any]) -> dict[str, Any]:
    """Data options ``path`` and ``root`` made absolute (``~`` expanded), so that the saved run
    finds its data again from any working directory."""
    return {k: str(Path(v).expanduser().resolve()) if k in PATH_OPTIONS and isinstance(v, str) and v else v for k, v in options.items()}


def absolute_eval_paths(eval_options: Mapping[str, Mapping[str, Any]], plugins: Plugins) -> dict[str, dict[str, Any]]:
    """Evaluation options that name an existing file or folder (``feature_weights="runs/clf"``,
    ``ref="stats.npz"``, ``out="../ood-images"``) made absolute, as data paths are, so that a run
    resumed from another working directory evaluates with the same files. A dataset's name stays
    a name, even beside a folder of that name."""

    def absolute(value: Any) -> Any:
        if not isinstance(value, str) or not value or value in plugins.datasets or not Path(value).expanduser().exists():
            return value
        return str(Path(value).expanduser().resolve())

    return {metric: {k: absolute(v) for k, v in options.items()} for metric, options in eval_options.items()}


def _plugin_options(plugins: Plugins, section: str) -> tuple[Any, Callable[[Any], set[str]]]:
    """The registry of a plugin section (objective, arch, data) and how to read one plugin's options."""
    if section == "objective":
        return plugins.objectives, lambda cls: {f.name for f in fields(cls.Config)}
    if section == "arch":
        return plugins.architectures, lambda arch: set(arch_options(arch))
    return plugins.datasets, lambda factory: set(signature_options(factory, skip=("self",)))


def _owners(plugins: Plugins, section: str, key: str) -> list[str]:
    """The plugins of ``section`` that have option ``key``."""
    registry, options_of = _plugin_options(plugins, section)
    return [e.name for e in registry if key in options_of(e.value)]


def _have(owners: list[str]) -> str:
    return f"{owners[0]} has it" if len(owners) == 1 else f"{', '.join(owners)} have it"


def check_sections(user: Mapping[str, Mapping[str, Any]], valid: Mapping[str, set[str]], names: Mapping[str, str] | None = None,
                   plugins: Plugins | None = None, growable: bool = True) -> None:  # fmt: skip
    """A key given in the wrong section (``--set train.lr=...``) is named with the section that has
    it. With ``names`` and ``plugins``, a key that only plugins not chosen have is named with them
    (``--objective vae --set arch.beta_neg=3``: intro and soft-intro have it); progressive
    growth's per-level lists (grow.beta_neg) are named only where the architecture grows, or
    where nothing else has the key."""
    for section, values in user.items():
        for key in values:
            if key == "name" or key in valid.get(section, set()):
                continue
            not_here = f"{section}.{key} is not an option of the {section} section"
            homes = [other for other, keys in valid.items() if key in keys and (growable or other != "grow")]
            if homes:
                raise ConfigError(f"{not_here}; it belongs to {homes[0]}: set {homes[0]}.{key} instead")
            for other in PLUGIN_SECTIONS if names and plugins else ():  # objective, arch, data
                owners = _owners(plugins, other, key) if other != section else []
                if owners:
                    raise ConfigError(f"{not_here}; it is an option of the {other} section ({_have(owners)}, not {other} {names[other]!r})")
            if key in valid.get("grow", set()):
                raise ConfigError(f"{not_here}; it belongs to grow: set grow.{key} instead")


def check_plugin_options(user: Mapping[str, Mapping[str, Any]], names: Mapping[str, str], valid: Mapping[str, set[str]],
                         plugins: Plugins, sections: tuple[str, ...], notes: Mapping[str, str] | None = None) -> None:
    """An option of another objective (architecture, dataset) than the chosen one is named with
    the plugins that have it (``--objective vae --set objective.beta_neg=2``), before
    :func:`check_sections` could send it to an unrelated section of the same key. ``notes``: a
    sentence to add per section."""
    for section in sections:
        registry, _ = _plugin_options(plugins, section)
        for key in _options(user.get(section, {})):
            owners = [] if key in valid[section] else _owners(plugins, section, key)
            if owners:
                raise ConfigError(f"{registry.kind} {names[section]!r} has no option {section}.{key} ({_have(owners)}); "
                                  f"valid: {', '.join(sorted(valid[section])) or '(none)'}{(notes or {}).get(section, '')}")  # fmt: skip


def dataset_of_path(path: Path) -> str | None:
    """The dataset an existing path stands for: ``folder`` for a directory, ``image-array`` for a
    .npy / .npz file holding an array of images (3 or 4 dimensions), ``points`` for a file of rows
    (.npy, .csv, ...); None for anything else."""
    from genvae.plugins.datasets.image_array import holds_images
    from genvae.plugins.datasets.points_file import POINT_SUFFIXES

    if path.is_dir():
        return "folder"
    if not path.is_file() or path.suffix.lower() not in POINT_SUFFIXES:
        return None
    return "image-array" if holds_images(path) else "points"


def data_from_path(user: Mapping[str, Mapping[str, Any]], plugins: Plugins) -> Mapping[str, Mapping[str, Any]]:
    """``--data DIR`` (a directory that is no dataset's name) means ``--data folder --set
    data.path=DIR``, ``--data FILE.csv`` (or .npy, ...) ``--data points --set data.path=FILE``;
    ``--data NAME:KEY=VALUE,...`` (the form eval's --in / --ref take) means
    ``--data NAME --set data.KEY=VALUE ...``. A name that looks like a path but is no directory,
    a file of another kind, or a path beside a different data.path is a one-line error."""
    from genvae.plugins.datasets.points_file import POINT_SUFFIXES

    data = user.get("data", {})
    name = str(data.get("name", DEFAULT_NAMES["data"]))
    if name in plugins.datasets:
        return user
    spec_name, colon, spec = name.partition(":")
    if colon and spec_name in plugins.datasets and not Path(name).expanduser().exists():
        options = parse_spec_options(spec)
        return {**user, "data": {**data, **options, "name": spec_name}}
    path = Path(name).expanduser()
    if dataset := dataset_of_path(path):
        if "path" in data and Path(str(data["path"])).expanduser().resolve() != path.resolve():
            raise ConfigError(f"--data {name} and data.path={data['path']} name two different {'folders' if dataset == 'folder' else 'files'}; give one of them")
        return {**user, "data": {**data, "name": dataset, "path": data.get("path", name)}}
    if path.is_file():
        raise ConfigError(f"{name!r} is a file; --data takes a folder of images (its parent folder?), a file of rows "
                          f"({', '.join(POINT_SUFFIXES)}), an array of images (.npy, .npz) or a dataset name: {', '.join(plugins.datasets.names())}")  # fmt: skip
    if "/" in name or "\\" in name or name.startswith(("~", ".")) or path.suffix.lower() in POINT_SUFFIXES:
        raise ConfigError(f"no file or directory {name!r} (and no dataset of that name); give an existing folder of images, "
                          f"a file of rows, or a dataset name: {', '.join(plugins.datasets.names())}")  # fmt: skip
    return user


def resolve(user: Mapping[str, Mapping[str, Any]], plugins: Plugins | None = None, advice: bool = True) -> tuple[ResolvedConfig, DataSource]:
    """Validate the user's settings, fill defaults and the dataset's recommendations. ``advice``
    False: the dataset's :class:`~genvae.errors.TrainingAdvice` is not shown (a resumed run's
    settings are fixed)."""
    plugins = plugins or get_plugins()
    user = data_from_path(user, plugins)
    names = {s: str(user.get(s, {}).get("name", DEFAULT_NAMES[s])) for s in DEFAULT_NAMES}
    objective_cls = plugins.objectives.get(names["objective"])
    data_factory = plugins.datasets.get(names["data"])
    valid = {  # the likeliest home of a misplaced key first
        "objective": {f.name for f in fields(objective_cls.Config)},
        "arch": set(arch_options(plugins.architectures.get(names["arch"]))),
        "data": set(data_options(plugins, names["data"])),
        "train": {f.name for f in fields(TrainConfig)},
        "optim": {f.name for f in fields(OptimConfig)},
        "grow": {f.name for f in fields(GrowConfig)},
    }
    check_plugin_options(user, names, valid, plugins, ("data",))
    check_sections({"data": user.get("data", {})}, valid)  # before the dataset is built

    data_cfg = absolute_data_paths(validate_options("data", names["data"], _options(user.get("data", {})), data_options(plugins, names["data"])))
    with warnings.catch_warnings():
        if not advice:
            warnings.simplefilter("ignore", TrainingAdvice)
        data = data_factory(**data_cfg)
    recommended = data.recommended
    arch_from_data = "name" not in user.get("arch", {}) and "name" in recommended.get("arch", {})
    if arch_from_data:
        names["arch"] = _recommended_architecture(plugins, names["data"], str(recommended["arch"]["name"]))
        valid["arch"] = set(arch_options(plugins.architectures.get(names["arch"])))
    arch = plugins.architectures.get(names["arch"])
    chosen_by_data = f" ({names['arch']!r} is the architecture dataset {names['data']!r} recommends; choose another with --arch)"
    check_plugin_options(user, names, valid, plugins, ("objective", "arch"), {"arch": chosen_by_data} if arch_from_data else None)
    check_sections(user, valid, names, plugins, growable=can_grow(arch))

    rec_train = dict(recommended.get("train", {}))  # a dataset recommends train and optim settings together
    train = build_dataclass("train", TrainConfig, {**{k: v for k, v in rec_train.items() if k in valid["train"]}, **user.get("train", {})})
    train.eval_options = absolute_eval_paths(train.eval_options, plugins)
    optim = build_dataclass("optim", OptimConfig, {**{k: v for k, v in rec_train.items() if k in valid["optim"]}, **user.get("optim", {})})
    options = arch_options(arch)
    rec_arch = {k: v for k, v in recommended.get("arch", {}).items() if k in options}
    try:
        arch_cfg = validate_options("arch", names["arch"], {**rec_arch, **_options(user.get("arch", {}))}, options)
    except ConfigError as exc:
        if not arch_from_data:
            raise
        raise ConfigError(f"{exc}{chosen_by_data}") from None
    num_classes = data.num_classes if train.conditional else 0
    rec_objective = _fitting_group_weights(objective_recipe(recommended, names["objective"], objective_cls, plugins), arch, data, num_classes, arch_cfg)
    user_objective = _options(user.get("objective", {}))
    if any(isinstance(v, Mapping) for v in user_objective.values()):
        _check_group_weights(user_objective, _latent_groups(arch, data, num_classes, arch_cfg), names["arch"])
    objective_cfg = build_dataclass("objective", objective_cls.Config, {**rec_objective, **user_objective})
    grows = can_grow(arch)
    if user.get("grow", {}).get("start_resolution") and not grows:
        raise ConfigError(f"architecture {names['arch']!r} cannot grow progressively; remove the [grow] settings or use --arch=style")
    rec_grow = dict(recommended.get("grow", {})) if grows else {}
    grow = build_dataclass("grow", GrowConfig, {**rec_grow, **user.get("grow", {})})

    cfg = ResolvedConfig(
        train=train,
        optim=optim,
        objective={"name": names["objective"], **to_jsonable(objective_cfg)},
        arch={"name": names["arch"], **arch_cfg},
        data={"name": names["data"], **data_cfg},
        grow=grow,
    )
    check_values(cfg, data, plugins)
    return cfg, data


def objective_recipe(recommended: Mapping[str, Any], name: str, cls: type, plugins: Plugins) -> dict[str, Any]:
    """A dataset's recommended settings for an objective: under its name, else under the name of
    the registered objective it derives from, or whose Config its Config extends (a plugin's VAE
    variant gets the VAE's β's), as far as they are its options."""
    if name in recommended:
        return dict(recommended[name])
    options = {f.name for f in fields(cls.Config)}
    for base, of_config in [*((b, False) for b in cls.__mro__[1:]), *((b, True) for b in cls.Config.__mro__[1:])]:
        for entry in plugins.objectives:
            if (entry.value.Config if of_config else entry.value) is base and entry.name in recommended:
                return {k: v for k, v in recommended[entry.name].items() if k in options}
    return {}


def _recommended_architecture(plugins: Plugins, data_name: str, arch_name: str) -> str:
    """The architecture a dataset names in ``recommended["arch"]["name"]``, used when the user
    names none (``--data fashion-mnist`` trains the paper's convolutional network)."""
    if arch_name not in plugins.architectures.names():
        raise ConfigError(f"dataset {data_name!r} recommends architecture {arch_name!r}, which is not installed; "
                          f"install its plugin or choose one with --arch ({', '.join(plugins.architectures.names())})")  # fmt: skip
    return arch_name


def _latent_groups(arch: Architecture, data: DataSource, num_classes: int, arch_cfg: Mapping[str, Any]) -> set[str] | None:
    """The names of the encoder's latent groups, from a build on the meta device (no memory, no
    initialisation cost); None for an architecture that cannot be built there."""
    try:
        with torch.device("meta"):
            return set(_construct(arch.encoder, data.shape, num_classes, arch_cfg).latent_groups)
    except Exception:  # noqa: BLE001 — its own errors come again, with their message, when it is built
        return None


def _fitting_group_weights(
    recommended: Mapping[str, Any], arch: Architecture, data: DataSource, num_classes: int, arch_cfg: Mapping[str, Any]
) -> dict[str, Any]:
    """Drop recommended per-group weights (``{"class": 1024, "content": 2048}``) that do not name
    the chosen architecture's latent groups, so that the objective's default applies instead."""
    if not any(isinstance(v, Mapping) for v in recommended.values()):
        return dict(recommended)
    groups = _latent_groups(arch, data, num_classes, arch_cfg)
    if groups is None:
        return dict(recommended)
    return {k: v for k, v in recommended.items() if not isinstance(v, Mapping) or set(v) == groups}


def _check_group_weights(objective: Mapping[str, Any], groups: set[str] | None, arch_name: str) -> None:
    """A weight given per latent group (``beta_neg={class=…, content=…}``) names exactly the
    architecture's groups, checked before training rather than at the first step that uses it."""
    for key, value in objective.items():
        if isinstance(value, Mapping) and groups is not None and set(value) != groups:
            raise ConfigError(f"objective.{key} names latent groups {sorted(value)}, but architecture {arch_name!r} has {sorted(groups)}; "
                              f"give one weight per group or a single number")  # fmt: skip


def check_values(cfg: ResolvedConfig, data: DataSource, plugins: Plugins | None = None) -> None:
    t, o = cfg.train, cfg.optim
    positive = {"train.steps": t.steps, "train.batch_size": t.batch_size, "optim.lr": o.lr, "optim.gamma": o.gamma}
    for key, value in positive.items():
        if not (math.isfinite(value) and value > 0):  # also catches nan and inf
            raise ConfigError(f"{key} must be a positive number, got {value}")
    at_least_zero = {"optim.lr_encoder": o.lr_encoder, "optim.lr_decoder": o.lr_decoder, "optim.grad_clip": o.grad_clip}
    for key, value in at_least_zero.items():
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{key} must be >= 0 (0: unused), got {value}")
    if not 0 <= t.seed < 2**32:
        raise ConfigError(f"train.seed must lie in [0, 2**32 - 1], got {t.seed}")
    for key in ("log_every", "checkpoint_every", "figures_every"):
        if getattr(t, key) < 0:
            raise ConfigError(f"train.{key} must be >= 0, got {getattr(t, key)}")
    milestones = list(o.milestones)
    if any(m <= 0 for m in milestones):
        raise ConfigError(f"optim.milestones must be positive steps, got {milestones}")
    if milestones != sorted(milestones):
        raise ConfigError(f"optim.milestones must be in increasing order, got {milestones}; write {sorted(milestones)}")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {o.betas}")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if t.log_with:
        check_trackers(t.log_with)
    check_evaluations(t, data.kind, plugins or get_plugins())
    if t.conditional and data.num_classes == 0:
        labels = {"folder": "; a folder's subfolders are its classes with --set data.labels=true",
                  "image-array": "; name the .npz's array of class labels with --set data.labels=NAME"}.get(cfg.data["name"], "")  # fmt: skip
        raise ConfigError(f"train.conditional needs labelled data, but dataset {cfg.data['name']!r} has no labels{labels}")
    for key, value in cfg.objective.items():
        if key.startswith(("beta", "gamma")) or key in ("m", "num_vae", "scale"):
            values = value.values() if isinstance(value, dict) else [value]
            if not all(math.isfinite(v) and v >= 0 for v in values):
                raise ConfigError(f"objective.{key} must be a number >= 0, got {value}")
    if cfg.grow.start_resolution:
        GrowthSchedule(cfg.grow, level_of(data.shape[-1]), t.batch_size, o.lr)  # raises on a bad schedule
        if cfg.grow.beta_neg and "beta_neg" not in cfg.objective:
            raise ConfigError(f"grow.beta_neg is set but objective {cfg.objective['name']!r} has no beta_neg")
    if "recon_loss" in cfg.objective:
        reconstruction_loss(cfg.objective["recon_loss"])  # raises "unknown reconstruction loss ..."


def build_objective(cfg: ResolvedConfig, plugins: Plugins | None = None) -> Objective:
    plugins = plugins or get_plugins()
    cls = plugins.objectives.get(cfg.objective["name"])
    return cls(build_dataclass("objective", cls.Config, _options(cfg.objective)))


def _construct(cls: type, data_shape: tuple[int, ...], num_classes: int, options: Mapping[str, Any]) -> Any:
    accepted = signature_options(cls.__init__)
    kwargs = {k: v for k, v in options.items() if k in accepted}
    module = cls(data_shape=tuple(data_shape), num_classes=num_classes, **kwargs)
    # the export (config.json) rebuilds the network from module.config: it must hold what built it
    unrecorded = [k for k in ("data_shape", "num_classes", *kwargs) if k not in getattr(module, "config", {})]
    if unrecorded:
        raise PluginError(f"{cls.__name__} does not record {', '.join(unrecorded)} in its config, so its export could not be "
                          "rebuilt; pass every constructor argument on: super().__init__(data_shape=data_shape, num_classes=num_classes, ...)")  # fmt: skip
    return module


def build_models(cfg: ResolvedConfig, data: DataSource, plugins: Plugins | None = None) -> tuple[Encoder, Decoder]:
    """Fresh networks for ``cfg`` (the encoder is built first, then the decoder)."""
    plugins = plugins or get_plugins()
    arch = plugins.architectures.get(cfg.arch["name"])
    num_classes = data.num_classes if cfg.train.conditional else 0
    options = _options(cfg.arch)
    encoder = _construct(arch.encoder, data.shape, num_classes, options)
    decoder = _construct(arch.decoder, data.shape, num_classes, options)
    return encoder, decoder


def parameter_counts_on_meta(cfg: ResolvedConfig, data: DataSource) -> tuple[int, int] | None:
    """Build the networks on the meta device (no memory), so that their own checks run (``genvae
    train --dry-run``); their parameter counts, or None for an architecture that cannot be built there."""
    try:
        with torch.device("meta"):
            encoder, decoder = build_models(cfg, data)
    except GenvaeError:
        raise
    except Exception:  # noqa: BLE001 - not buildable on meta; training builds it for real
        return None
    return sum(p.numel() for p in encoder.parameters()), sum(p.numel() for p in decoder.parameters())


def can_grow(arch: Architecture) -> bool:
    """Whether an architecture supports progressive growing (its networks have ``set_growth``)."""
    return hasattr(arch.encoder, "set_growth") and hasattr(arch.decoder, "set_growth")


@dataclass
class EvalModels(Models):
    """Models for evaluation and figures, wherever the networks are: inputs are moved to a
    network's device and floating inputs cast to its dtype (NumPy's float64 included), outputs
    go back to the input's device, so that code working on the CPU (figures, metrics) can use
    networks that train on a GPU. One sample without its batch dimension is a clear error."""

    sample_shape: tuple[int, ...] | None = None  # one sample's shape (checked unless the decoder grows)

    def encode(self, x: Any, y: Any = None) -> tuple[Tensor, Tensor]:
        x = model_input(x, self.sample_shape)
        if self.sample_shape is not None and self.output_size is None and tuple(x.shape[1:]) != self.sample_shape:
            raise DataError(self._shape_error(tuple(x.shape)))
        y = self._labels(y, self.encoder)
        mu, logvar = super().encode(_like_parameters(x, self.encoder), y)
        return mu.to(x.device), logvar.to(x.device)

    def decode(self, z: Any, y: Any = None) -> Tensor:
        z = torch.as_tensor(z)
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            one = ": give z[None]" if z.dim() == 1 and len(z) == self.z_dim else ""
            raise DataError(f"decode takes a batch of codes, shape (N, {self.z_dim}); got shape {tuple(z.shape)}{one}")
        return super().decode(_like_parameters(z, self.decoder), self._labels(y, self.decoder)).to(z.device)

    def _shape_error(self, shape: tuple[int, ...]) -> str:
        expected = tuple(self.sample_shape or ())
        hint = ""
        if shape == expected:
            hint = ": one sample, give x[None] (or x.unsqueeze(0))"
        elif len(shape) == len(expected) and expected[0] == 1 and shape[1:] == expected[1:]:
            hint = ": the channel axis is missing, give x[:, None]"
        elif len(shape) == len(expected) + 1 and shape[-1] == expected[0] and shape[1:-1] == expected[1:]:
            hint = ": channels last, give x.permute(0, 3, 1, 2)"
        return f"encode takes a batch of shape (N, {', '.join(map(str, expected))}), the run's samples; got {shape}{hint}"

    def _labels(self, y: Any, network: torch.nn.Module) -> Tensor | None:
        """Class labels on the network's device, within the classes it knows."""
        if y is None:
            return None
        y = torch.as_tensor(y)
        classes = num_classes_of(network)
        if classes and len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise DataError(f"class labels from {int(y.min())} to {int(y.max())}, but the model knows classes 0 to {classes - 1}; "
                            "give labels of its own classes")  # fmt: skip
        return y.to(module_device(network))


def model_input(x: Any, sample_shape: tuple[int, ...] | None) -> Tensor:
    """``x`` as a tensor for the encoder: uint8 images (0-255, as ``genvae.train`` takes them)
    scaled to [0, 1], the integers of points as floats."""
    x = torch.as_tensor(x)
    if x.is_floating_point():
        return x
    if len(sample_shape or ()) != 3:
        return x.float()
    if x.dtype != torch.uint8:
        raise DataError(f"images are floats in [0, 1] or uint8 (0-255); got {x.dtype}: give x.float() / 255 for 0-255 values")
    return x.float() / 255


def _like_parameters(t: Tensor, module: torch.nn.Module) -> Tensor:
    """``t`` on ``module``'s device, and in its parameters' dtype when ``t`` is floating."""
    first = next(module.parameters(), None)
    if first is None:
        return t
    return t.to(device=first.device, dtype=first.dtype if t.is_floating_point() else t.dtype)


def models_view(encoder: Encoder, decoder: Decoder, data: DataSource, generator: torch.Generator | None = None) -> Models:
    """Models for evaluation (:class:`EvalModels`); a growing decoder's images are shown at the
    data's resolution."""
    output_size = data.shape[-1] if hasattr(decoder, "set_growth") else None
    return EvalModels(encoder, decoder, dict(encoder.latent_groups), data.dim, generator, output_size=output_size, sample_shape=tuple(data.shape))


class UnavailableData(DataSource):
    """Stands in for a run's dataset whose files are not here: the shape and sample pictures work
    (``genvae sample``, ``interpolate``, ``translate`` need no data); reading data raises the
    dataset's own error, saying that this command needs it (``open_eval_data`` checks for it)."""

    def __init__(self, name: str, shape: tuple[int, ...], error: DataError) -> None:
        self.name, self.shape, self.error = name, shape, error
        self.kind = "images" if len(shape) == 3 else "points"

    def unavailable(self) -> DataError:
        return DataError(f"this command reads the run's data, which is not available here ({self.error}); "
                         "name the data with --data (encode, eval likelihood) or --in (eval ood), e.g. --data=folder:path=DIR")  # fmt: skip

    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> Any:
        raise self.unavailable()

    def write_figures(self, models: Models, out_dir: Path, seed: int = 0) -> list[Path]:
        raise self.unavailable()

    def test_batch(self, n: int, seed: int = 0) -> Any:
        raise self.unavailable()

    def plot_samples(self, x: Tensor, path: Path) -> None:
        if self.kind != "images":  # a points file's picture puts its rows beside the samples
            raise self.unavailable()
        super().plot_samples(x, path)  # a grid of images


@dataclass
class LoadedRun:
    """A run directory reopened: its config, data source and exported networks (in eval mode),
    and the training step of those networks (None for exports written before genvae kept it)."""

    path: Path
    config: ResolvedConfig
    data: DataSource
    encoder: Encoder
    decoder: Decoder
    step: int | None = None

    @property
    def models(self) -> Models:
        return models_view(self.encoder, self.decoder, self.data)

    def __repr__(self) -> str:  # a notebook shows this, not the networks' layers (thousands of lines for style models)
        c = self.config
        return (f"LoadedRun({str(self.path)!r}: {c.objective['name']}, {c.arch['name']} on {c.data['name']} {tuple(self.data.shape)}, "
                f"z_dim={self.models.z_dim}, step {self.step})")  # fmt: skip


def load_component(directory: Path, plugins: Plugins | None = None) -> Encoder | Decoder:
    """Rebuild an exported encoder or decoder from its config.json and model.safetensors."""
    plugins = plugins or get_plugins()
    meta = read_component_config(directory)
    require_installed(plugins.architectures, meta["architecture"], "trained with")
    arch = plugins.architectures.get(meta["architecture"])
    cls = arch.encoder if meta["role"] == "encoder" else arch.decoder
    accepted = signature_options(cls.__init__, skip=("self",))
    config = {**{k: v for k, v in arch.saved_defaults.items() if k in accepted}, **meta["config"]}
    config["data_shape"] = tuple(config["data_shape"])
    module = cls(**config)
    load_weights(module, directory)
    return module.eval()


def require_installed(registry: Any, name: str, done: str) -> None:
    """A saved run's objective / architecture that is not registered here: the plugin package
    that registered it is missing (an unknown-name error would suggest a built-in instead)."""
    if name not in registry:
        raise PluginError(not_installed(registry.kind, name, done))


def not_installed(kind: str, name: str, done: str) -> str:
    return (f"{kind} {name!r}, which this run was {done}, is not installed: install the plugin package that registers it "
            "(genvae plugins list shows what is installed)")


def read_run_config(path: Path) -> ResolvedConfig:
    """A run's saved config.json; one that is valid JSON but not a run's config is a damaged file."""
    return ResolvedConfig.from_dict(run_config_dict(path))


def run_config_dict(path: Path) -> dict[str, Any]:
    """A run's saved config.json as saved, completed with the options added since; one that is
    valid JSON but not a run's config is a damaged file."""
    from genvae.core.checkpoint import damaged

    raw = read_json(path)
    missing = [s for s in ("train", "optim", "objective", "arch", "data") if not isinstance(raw, dict) or not isinstance(raw.get(s), dict)]
    if missing:
        raise damaged(path, f"is not a run's config (no '{missing[0]}' section)")
    return with_added_options(raw)


def saved_arch(arch: Mapping[str, Any], plugins: Plugins | None = None) -> dict[str, Any]:
    """A saved run's ``arch`` section completed with its architecture's ``saved_defaults`` (options
    that did not exist when it was saved), so the run is rebuilt as it was trained."""
    plugins = plugins or get_plugins()
    name = arch.get("name")
    defaults = plugins.architectures.get(name).saved_defaults if name in plugins.architectures else {}
    return {**defaults, **arch}


def saved_objective(objective: Mapping[str, Any], plugins: Plugins | None = None) -> dict[str, Any]:
    """A saved run's ``objective`` section completed with its objective's defaults for options
    added since it was saved (a new option's default keeps the former behaviour, e.g.
    decoder_fake_grad), so that a saved bench cell or run compares equal to the same settings now."""
    plugins = plugins or get_plugins()
    name = objective.get("name")
    if name not in plugins.objectives:
        return dict(objective)
    defaults = {f.name: f.default for f in fields(plugins.objectives.get(name).Config) if f.default is not MISSING}
    return {**to_jsonable(defaults), **objective}


def with_added_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config (a run's, or a bench cell's resolved settings) whose ``arch`` and
    ``objective`` sections are completed with the options added since (saved_arch, saved_objective)."""
    out = dict(config)
    if isinstance(out.get("arch"), dict):
        out["arch"] = saved_arch(out["arch"])
    if isinstance(out.get("objective"), dict):
        out["objective"] = saved_objective(out["objective"])
    return out


COMPONENTS = ("encoder", "decoder")


def runs_below(path: Path, depth: int = 3) -> list[Path]:
    """Run directories (holding a config.json) up to ``depth`` levels below ``path``, e.g. the
    ``runs/<objective>`` of a bench's output directory."""
    found: list[Path] = []
    for level in range(1, depth + 1):
        configs = path.glob("/".join(["*"] * level) + "/config.json")
        # not an exported network's config, nor another tool's (a feature classifier's)
        found += [p.parent for p in configs if p.parent.name not in COMPONENTS and not foreign_config(p)]
    return sorted(found)


def foreign_config(path: Path) -> str | None:
    """What a config.json that genvae wrote for something else than a run is (a feature
    classifier), or None. Any other config.json is a run's, damaged when it cannot be read as one."""
    try:
        raw = read_json(path)
    except (OSError, RunDirError):
        return None
    if isinstance(raw, dict) and raw.get("features") == "classifier" and "train" not in raw:
        return "a feature classifier (written by 'genvae eval train-classifier'; give it to --feature-weights), not a genvae run"
    if isinstance(raw, dict) and raw.get("role") in ("encoder", "decoder") and "architecture" in raw and "train" not in raw:
        run = path.parent.parent
        return f"the {raw['role']} export of the run {run}, not a run itself; give {run}" if (run / "config.json").is_file() else \
            f"a network export ({raw['role']}), not a genvae run"
    return None


def bench_cell_settings(path: Path) -> dict[str, Any] | None:
    """The settings of a finished bench cell (``OUT/cells/<data>-<objective>`` of ``genvae bench
    table2`` / ``stability`` / ``collapse``: metrics of every seed and seed 0's exported networks),
    or None for anything else. Such a cell is no run, but sampling and evaluating take it."""
    result = path / "result.json"
    if (path / "config.json").is_file() or not result.is_file() or not (path / "encoder" / COMPONENT_CONFIG).is_file():
        return None
    try:
        settings = read_json(result).get("settings")
    except (OSError, RunDirError, AttributeError):
        return None
    return settings if isinstance(settings, dict) and isinstance(settings.get("resolved"), dict) else None


def bench_cells_below(path: Path) -> list[Path]:
    """The cells of a 2-D bench's output directory (``OUT/cells/<name>`` of table2, stability and
    collapse), finished or still training."""
    return sorted(p for p in path.glob("cells/*") if (p / "settings.json").is_file() or bench_cell_settings(p) is not None)


def some_paths(paths: list[Path], most: int = 6) -> str:
    """The first ``most`` paths, comma-separated, and '...' when there are more."""
    return ", ".join(str(p) for p in paths[:most]) + (", ..." if len(paths) > most else "")


def require_run_dir(path: Path) -> None:
    """A one-line error unless ``path`` is a run directory; names the runs below it if it holds some."""
    if bench_cell_settings(path) is not None:
        raise RunDirError(f"{path} is a bench cell (seed 0's networks of a batched model), not a run: 'genvae sample' and "
                          "'genvae eval' take it; info, compare and --resume need a run directory")  # fmt: skip
    if (path / "config.json").is_file():
        if what := foreign_config(path / "config.json"):
            raise RunDirError(f"{path} is {what}")
        return
    if not path.exists():
        raise RunDirError(f"{path} does not exist; give a run directory written by 'genvae train'")
    below = runs_below(path) if path.is_dir() else []
    if below:
        raise RunDirError(f"{path} is not a run directory itself but holds runs: {some_paths(below)}")
    if cells := bench_cells_below(path):
        raise RunDirError(f"{path} is a bench's output, not a run: its cells ({some_paths(cells)}) are batched models; 'genvae sample' and "
                          "'genvae eval' take a finished cell, and the same bench command (with --report for table2 and stability) "
                          "writes its table again")  # fmt: skip
    raise RunDirError(f"{path} is not a genvae run directory (no config.json); train one with 'genvae train'")


def matching_exports(path: Path) -> Path:
    """Where a run's encoder and decoder of one step are: the run directory, or its checkpoint
    when the two exports are of different steps (a kill between writing them)."""
    steps = {part: read_component_config(path / part).get("step") if (path / part / COMPONENT_CONFIG).is_file() else None
             for part in ("encoder", "decoder")}  # fmt: skip
    checkpoint = find_checkpoint(path)
    if None in steps.values() or steps["encoder"] == steps["decoder"] or checkpoint is None:
        return path
    warnings.warn(f"{path}: its encoder export is of step {steps['encoder']} and its decoder's of step {steps['decoder']} (training "
                  f"stopped between writing them); using the pair saved with the checkpoint, {checkpoint}", stacklevel=3)  # fmt: skip
    return checkpoint


def load_run(run_dir: str | Path, plugins: Plugins | None = None, map_location: str | torch.device = "cpu") -> LoadedRun:
    """Reopen a run directory: its config, its data source (a stand-in that only knows the shape
    when the data files are not here) and its exported networks, in eval mode on ``map_location``,
    their parameters without gradients (for inference: ``run.models.decode(z)`` needs no
    ``torch.no_grad()``; training continues with ``genvae.train(run_dir, resume=True)``)."""
    plugins = plugins or get_plugins()
    path = Path(run_dir)
    cell = bench_cell_settings(path)
    if cell is None:
        require_run_dir(path)
        cfg = read_run_config(path / "config.json")
    else:  # seed 0's networks of a batched bench model, with the config its members were built from
        cfg = ResolvedConfig.from_dict(with_added_options(cell["resolved"]))
    trainer = training_process(path)
    if find_checkpoint(path) is None and not (path / "encoder" / COMPONENT_CONFIG).is_file():
        doing = f"it is being trained by {trainer}" if trainer else "it has not been trained"
        raise RunDirError(f"{path} has no checkpoint yet: {doing}; the first is written at step {cfg.train.checkpoint_every} "
                          f"(train.checkpoint_every) and at the end")  # fmt: skip
    exports = matching_exports(path)
    encoder = load_component(exports / "encoder", plugins).to(map_location).requires_grad_(False)
    decoder = load_component(exports / "decoder", plugins).to(map_location).requires_grad_(False)
    step = read_component_config(exports / "encoder").get("step", cell["steps"] if cell else None)
    if trainer:
        warnings.warn(f"{path} is being trained by {trainer}: this uses its checkpoint of step {step}; later steps are not in it", stacklevel=2)
    name, shape = cfg.data["name"], tuple(encoder.config["data_shape"])
    if name not in plugins.datasets:  # e.g. the plugin that trained it was uninstalled
        missing = DataError(not_installed("dataset", name, "trained on"))
        return LoadedRun(path, cfg, UnavailableData(name, shape, missing), encoder, decoder, step)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TrainingAdvice)  # for training it; this run is trained
            data = plugins.datasets.get(name)(**_options(given_data_here(cfg.data, path)))
    except DataError as exc:  # e.g. a run copied to a machine without its training data
        data = UnavailableData(name, shape, exc)
    return LoadedRun(path, cfg, data, encoder, decoder, step)


__all__ = ["ResolvedConfig", "read_run_config", "resolve", "build_models", "build_objective", "load_run", "LoadedRun"]
