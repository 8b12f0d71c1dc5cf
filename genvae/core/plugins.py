"""Plugin discovery: built-ins, installed packages and named modules, loaded through the same hooks.

Environment switches:
- ``GENVAE_PLUGINS=module1,module2``: also load these importable modules as plugins, without
  installing them (each is registered under its module name, even with autoload disabled).
- ``GENVAE_DISABLE_PLUGIN_AUTOLOAD=1``: load only the built-ins (no ``genvae`` entry points).
- ``GENVAE_BLOCK_PLUGINS=name1,name2``: never load these plugins (built-in or installed).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata as metadata
import inspect
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import pluggy

from genvae.core import hookspecs
from genvae.core.registry import Registry
from genvae.errors import PluginError

ENTRY_POINT_GROUP = "genvae"
AUTOLOAD_ENV = "GENVAE_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "GENVAE_BLOCK_PLUGINS"
MODULES_ENV = "GENVAE_PLUGINS"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "genvae.plugins.objectives.vae",
    "genvae.plugins.objectives.intro",
    "genvae.plugins.objectives.soft_intro",
    "genvae.plugins.architectures.mlp",
    "genvae.plugins.datasets.toy2d",
    "genvae.plugins.datasets.points_file",
    "genvae.plugins.metrics.toy2d",
    "genvae.plugins.metrics.fid",
    "genvae.plugins.metrics.features",
    "genvae.plugins.metrics.ood",
    "genvae.plugins.metrics.likelihood",
    "genvae.plugins.metrics.latents",
    "genvae.plugins.metrics.classifier",
    "genvae.plugins.losses.reconstruction",
    "genvae.plugins.architectures.residual",
    "genvae.plugins.datasets.images",
    "genvae.plugins.architectures.lord",
    "genvae.plugins.architectures.style",
    "genvae.plugins.datasets.shapes3d_synthetic",
    "genvae.plugins.metrics.translation",
    "genvae.plugins.losses.perceptual",
)

# hook name -> registry kind
REGISTRATION_HOOKS: dict[str, str] = {
    "genvae_register_objectives": "objective",
    "genvae_register_architectures": "architecture",
    "genvae_register_datasets": "dataset",
    "genvae_register_metrics": "metric",
    "genvae_register_losses": "loss",
    "genvae_register_features": "feature extractor",
}


@dataclass
class PluginInfo:
    name: str
    distribution: str = "genvae"
    version: str = ""
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Plugins:
    """Everything plugins registered, and what each plugin is."""

    manager: pluggy.PluginManager
    registries: dict[str, Registry[Any]]
    info: dict[str, PluginInfo]

    @property
    def objectives(self) -> Registry[Any]:
        return self.registries["objective"]

    @property
    def architectures(self) -> Registry[Any]:
        return self.registries["architecture"]

    @property
    def datasets(self) -> Registry[Any]:
        return self.registries["dataset"]

    @property
    def metrics(self) -> Registry[Any]:
        return self.registries["metric"]

    @property
    def losses(self) -> Registry[Any]:
        return self.registries["loss"]

    @property
    def features(self) -> Registry[Any]:
        return self.registries["feature extractor"]


def _env_names(variable: str) -> list[str]:
    """The comma-separated names in an environment variable, blanks dropped."""
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def _blocked() -> set[str]:
    return set(_env_names(BLOCK_ENV))


def _genvae_version() -> str:
    try:
        return metadata.version("genvae")
    except metadata.PackageNotFoundError:
        return "dev"


def create_manager(extra: list[tuple[str, Any]] | None = None) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """A PluginManager with the hookspecs, the built-ins, installed entry points, the modules
    named in ``GENVAE_PLUGINS`` and ``extra``.

    A plugin that fails to import is recorded with its error instead of raising, so one broken
    package cannot take the CLI down.
    """
    pm = pluggy.PluginManager("genvae")
    pm.add_hookspecs(hookspecs)
    info: dict[str, PluginInfo] = {}
    blocked = _blocked()
    for name in blocked:
        pm.set_blocked(name)

    version = _genvae_version()
    for module_name in BUILTIN_PLUGINS:
        short = module_name.rsplit(".", 2)[-2] + "." + module_name.rsplit(".", 1)[-1]
        if short in blocked:
            continue
        pm.register(importlib.import_module(module_name), name=short)
        info[short] = PluginInfo(short, version=version)

    def register_loaded(name: str, load: Callable[[], Any], dist: str, dist_version: str = "") -> None:
        try:
            plugin = load()
            if (other := pm.get_name(plugin)) is not None:  # e.g. an installed plugin's module named in GENVAE_PLUGINS too
                info[name] = PluginInfo(name, dist, dist_version, error=f"is already loaded as plugin {other!r}; leave it out of {MODULES_ENV}")
                return
            pm.register(plugin, name=name)
            info[name] = PluginInfo(name, dist, dist_version)
        except Exception as exc:  # a broken third-party plugin must not stop genvae
            hint = ""
            if dist != MODULES_ENV and isinstance(exc, (ImportError, AttributeError)):
                hint = f" (the entry point of {dist}: after changing its pyproject.toml or moving its module, reinstall it with pip install -e)"
            info[name] = PluginInfo(name, dist, dist_version, error=f"{type(exc).__name__}: {exc}{hint}")

    if not os.environ.get(AUTOLOAD_ENV):
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "?"
            if ep.name in blocked:
                continue
            if pm.has_plugin(ep.name) or ep.name in info:
                taken = info.get(ep.name)
                if taken is not None and taken.distribution != dist:  # another package's plugin of that name: say so
                    clash = f"{ep.name} ({dist})"
                    info[clash] = PluginInfo(clash, dist, ep.dist.version if ep.dist else "",
                                             error=f"its entry point name {ep.name!r} is taken by {taken.distribution}'s plugin; give the "
                                                   f"entry point another name in {dist}'s pyproject.toml ([project.entry-points.genvae]) and reinstall it")  # fmt: skip
                continue
            register_loaded(ep.name, ep.load, dist, ep.dist.version if ep.dist else "")

    for module_name in _env_names(MODULES_ENV):  # named explicitly: loaded even with autoload off
        if module_name in blocked or pm.has_plugin(module_name):
            continue
        register_loaded(module_name, functools.partial(importlib.import_module, module_name), MODULES_ENV)

    for name, plugin in extra or []:
        if name in blocked or pm.get_name(plugin) is not None:  # loaded already (an installed plugin's module): as it is
            continue
        pm.register(plugin, name=name)
        info[name] = PluginInfo(name, distribution=getattr(plugin, "__name__", "?"))

    _drop_plugins_with_unknown_hooks(pm, info)
    _note_unmarked_hooks(pm, info)
    return pm, info


def _note_unmarked_hooks(pm: pluggy.PluginManager, info: dict[str, PluginInfo]) -> None:
    """A plugin function named like a hook but without ``@genvae.hookimpl`` is never called, so
    what it registers silently does not exist: its plugin is shown as broken, naming the fix."""
    for name, plugin in pm.list_name_plugin():
        if plugin is None or (name in info and info[name].error):
            continue
        unmarked = [attr for attr in dir(plugin) if attr.startswith("genvae_") and callable(getattr(plugin, attr, None))
                    and pm.parse_hookimpl_opts(plugin, attr) is None]  # fmt: skip
        if unmarked:
            entry = info.setdefault(name, PluginInfo(name))
            entry.error = f"{', '.join(unmarked)} lacks the @genvae.hookimpl marker, so genvae never calls it; decorate it with @genvae.hookimpl"


def _drop_plugins_with_unknown_hooks(pm: pluggy.PluginManager, info: dict[str, PluginInfo]) -> None:
    """A plugin implementing a hook genvae does not define (a misspelt name) is unregistered and
    shown as broken, with the hook it probably meant; the other plugins keep working."""
    import difflib

    known = [name for name in vars(hookspecs) if name.startswith("genvae_")]
    for hook_name, caller in list(vars(pm.hook).items()):
        if hook_name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook or not pm.is_registered(impl.plugin):
                continue
            close = difflib.get_close_matches(hook_name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; genvae's hooks: {', '.join(known)}"
            pm.unregister(impl.plugin)
            entry = info.setdefault(impl.plugin_name, PluginInfo(impl.plugin_name))
            entry.error = f"implements hook {hook_name!r}, which genvae does not define{hint}"


def collect(pm: pluggy.PluginManager, info: dict[str, PluginInfo]) -> Plugins:
    """Call every registration hook, one implementation at a time, attributing what it adds.
    An implementation that raises, registers something that is not of its kind, or a name that
    is taken (the built-ins come first) registers nothing and marks its plugin broken: the others
    keep working, ``genvae plugins list`` included."""
    registries = {kind: Registry[Any](kind) for kind in REGISTRATION_HOOKS.values()}
    for hook_name, kind in REGISTRATION_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name
            plugin_info = info.setdefault(plugin_name, PluginInfo(plugin_name))
            staged: dict[str, Any] = {}

            def register(name: str, value: Any, _kind: str = kind, _plugin: str = plugin_name, _staged: dict[str, Any] = staged) -> None:
                check_registered(_kind, name, value)
                registries[_kind].check_free(name, _plugin)
                if name in _staged:
                    raise PluginError(f"registers {_kind} {name!r} twice")
                _staged[name] = value

            try:
                impl.function(register=register)
            except PluginError as exc:
                plugin_info.error = str(exc)
                continue
            except Exception as exc:
                plugin_info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                continue
            for name, value in staged.items():
                registries[kind].register(name, value, plugin=plugin_name)
                plugin_info.registers.setdefault(kind, []).append(name)
    broken = {i.name: i.error for i in info.values() if i.error}
    for registry in registries.values():
        registry.broken = broken
    return Plugins(pm, registries, info)


def check_registered(kind: str, name: str, value: Any) -> None:
    """What a registration hook hands over must be of its kind (an Architecture pair, a callable
    dataset factory, a Metric, ...), so that a wrong one marks its plugin broken when loaded
    instead of failing later inside an unrelated command."""
    from genvae.core.interfaces import Architecture, Metric

    if kind == "objective":
        check_objective_class(name, value)
    elif kind == "architecture" and not isinstance(value, Architecture):
        raise TypeError(f"architecture {name!r} must be a genvae.core.interfaces.Architecture(encoder=..., decoder=...), got {value!r}")
    elif kind == "metric" and not isinstance(value, Metric):
        raise TypeError(f"metric {name!r} must be a genvae.core.interfaces.Metric(evaluate=...), got {value!r}")
    elif kind in ("dataset", "loss", "feature extractor") and not callable(value):
        raise TypeError(f"{kind} {name!r} must be callable (a class or factory), got {value!r}")


def check_objective_class(name: str, cls: Any) -> None:
    """An objective is a concrete Objective class with a dataclass ``Config`` (its options);
    anything else is refused when registered, so that the plugin shows as broken."""
    from genvae.core.interfaces import Objective

    if not (inspect.isclass(cls) and issubclass(cls, Objective)):
        raise TypeError(f"objective {name!r} must be a subclass of genvae.core.interfaces.Objective, got {cls!r}")
    if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
        raise TypeError(f"objective {name!r} needs a dataclass Config (its options; an empty @dataclass is fine)")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TypeError(f"objective {name!r} does not implement {missing}")
    required = [f.name for f in dataclasses.fields(cls.Config) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required:
        raise TypeError(f"objective {name!r}: its Config option(s) {', '.join(required)} need a default (the value when a user sets none)")


_cached: Plugins | None = None


def get_plugins(refresh: bool = False) -> Plugins:
    """The process-wide plugin set (loaded once)."""
    global _cached
    if _cached is None or refresh:
        pm, info = create_manager()
        _cached = collect(pm, info)
    return _cached


def load_plugins(extra: list[tuple[str, ModuleType | object]] | None = None) -> Plugins:
    """A fresh plugin set, optionally with extra plugin objects (tests, notebooks)."""
    pm, info = create_manager(extra)
    return collect(pm, info)


def use_plugins(plugins: Plugins | None) -> None:
    """Make ``plugins`` the process-wide set (``None`` forces a reload on next use)."""
    global _cached
    _cached = plugins


__all__ = ["Plugins", "PluginInfo", "get_plugins", "load_plugins", "use_plugins"]
