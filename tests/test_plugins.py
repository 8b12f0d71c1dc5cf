"""Plugin discovery: built-ins, entry points, blocking, errors, attribution."""

from __future__ import annotations

import textwrap

import pytest

import genvae

from genvae.core.plugins import load_plugins
from genvae.core.registry import Registry, unknown_name_message
from genvae.errors import PluginError


def test_builtins_are_registered_through_hooks():
    plugins = load_plugins()
    assert plugins.objectives.names() == ["intro", "soft-intro", "vae"]
    assert "mlp" in plugins.architectures
    assert {"8gaussians", "2spirals", "checkerboard", "rings", "25gaussians"} <= set(plugins.datasets.names())
    assert plugins.info["objectives.soft_intro"].registers == {"objective": ["soft-intro"]}


def test_unknown_name_suggests_the_closest():
    message = unknown_name_message("objective", "sof-intro", ["intro", "soft-intro", "vae"])
    assert message == "unknown objective 'sof-intro'; did you mean 'soft-intro'? available: intro, soft-intro, vae"
    assert "did you mean 'mlp'?" in unknown_name_message("architecture", "MLP", ["lord", "mlp", "residual"])  # difflib alone misses case
    with pytest.raises(PluginError, match="unknown objective 'xyz'; available: intro, soft-intro, vae"):
        load_plugins().objectives.get("xyz")


def test_duplicate_names_are_an_error_naming_both_plugins():
    registry = Registry[int]("objective")
    registry.register("vae", 1, plugin="first")
    with pytest.raises(PluginError, match="registered by both 'first' and 'second'"):
        registry.register("vae", 2, plugin="second")


class ExtraObjective:
    """A plugin object registered in a test."""

    import genvae

    @staticmethod
    @genvae.hookimpl
    def genvae_register_objectives(register):
        from genvae.plugins.objectives.vae import VAE

        register("my-vae", VAE)


def test_extra_plugin_object_registers_and_is_attributed():
    plugins = load_plugins(extra=[("my-plugin", ExtraObjective)])
    assert "my-vae" in plugins.objectives
    assert plugins.objectives.entry("my-vae").plugin == "my-plugin"
    assert "my-vae" not in load_plugins().objectives  # removed again: nothing global changed


def _fake_distribution(tmp_path, module_source: str, name: str = "genvae_fakeplug"):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(module_source))
    dist = tmp_path / "genvae_fakeplug-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: genvae-fakeplug\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[genvae]\nfakeplug = {name}\n")


GOOD_PLUGIN = """
    import genvae
    from genvae.plugins.objectives.vae import VAE

    @genvae.hookimpl
    def genvae_register_objectives(register):
        register("fake-vae", VAE)
"""


def test_entry_point_plugins_load_unless_disabled_or_blocked(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD")
    plugins = load_plugins()
    assert "fake-vae" in plugins.objectives
    info = plugins.info["fakeplug"]
    assert (info.distribution, info.version, info.error) == ("genvae-fakeplug", "0.3", None)

    monkeypatch.setenv("GENVAE_BLOCK_PLUGINS", "fakeplug")
    assert "fake-vae" not in load_plugins().objectives
    monkeypatch.delenv("GENVAE_BLOCK_PLUGINS")
    monkeypatch.setenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "fake-vae" not in load_plugins().objectives


def test_broken_plugin_is_reported_not_fatal(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "raise ImportError('missing dependency foo')\n", name="genvae_brokenplug")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD")
    plugins = load_plugins()
    assert "missing dependency foo" in plugins.info["fakeplug"].error
    assert "the entry point of genvae-fakeplug: after changing its pyproject.toml or moving its module, reinstall it" in plugins.info["fakeplug"].error
    assert "soft-intro" in plugins.objectives


def test_a_misspelled_hook_marks_its_plugin_broken_and_the_others_keep_working():
    import genvae

    class Misspelled:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_objectivs(register):
            pass

    plugins = load_plugins(extra=[("bad", Misspelled)])
    assert plugins.info["bad"].error == "implements hook 'genvae_register_objectivs', which genvae does not define; did you mean 'genvae_register_objectives'?"
    assert "soft-intro" in plugins.objectives  # the built-ins still load
    with pytest.raises(PluginError, match="plugin bad failed to load: implements hook 'genvae_register_objectivs'"):
        plugins.objectives.get("my-objective")


def test_an_objective_that_cannot_be_built_marks_its_plugin_broken():
    import dataclasses

    import genvae
    from genvae.core.interfaces import Objective

    class NoConfig(Objective):
        def phase_loss(self, phase, ctx, models):
            raise NotImplementedError

    class NoLoss(Objective):
        @dataclasses.dataclass
        class Config:
            beta: float = 1.0

    for cls, expected in [(NoConfig, "objective 'x' needs a dataclass Config"), (NoLoss, "objective 'x' does not implement begin_step, phase_loss")]:

        class Plugin:
            @staticmethod
            @genvae.hookimpl
            def genvae_register_objectives(register, _cls=cls):
                register("x", _cls)

        plugins = load_plugins(extra=[("mine", Plugin)])
        assert expected in plugins.info["mine"].error and "x" not in plugins.objectives


def test_a_name_taken_or_a_wrong_registration_breaks_only_its_plugin():
    """A third-party "vae", an architecture that is a plain tuple, a dataset that is no factory:
    each plugin is broken, the built-ins keep their names, and errors about other names stay one line."""
    import genvae

    class TakesVae:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_objectives(register):
            from genvae.plugins.objectives.vae import VAE

            register("mine", VAE)  # nothing of a broken implementation is registered
            register("vae", VAE)

    class TupleArch:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_architectures(register):
            register("tuple-arch", (object, object))

    class NumberData:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_datasets(register):
            register("forty-two", 42)

    plugins = load_plugins(extra=[("takes-vae", TakesVae), ("tuple", TupleArch), ("number", NumberData)])
    assert "objective 'vae' is registered by both 'objectives.vae' and 'takes-vae'; rename it in 'takes-vae'" in plugins.info["takes-vae"].error
    assert plugins.objectives.entry("vae").plugin == "objectives.vae" and "mine" not in plugins.objectives
    assert "architecture 'tuple-arch' must be a genvae.core.interfaces.Architecture" in plugins.info["tuple"].error
    assert "dataset 'forty-two' must be callable" in plugins.info["number"].error
    assert "tuple-arch" not in plugins.architectures and "forty-two" not in plugins.datasets
    with pytest.raises(PluginError, match="unknown architecture 'mlpp'; did you mean 'mlp'"):
        plugins.architectures.get("mlpp")


def test_an_objective_derived_from_a_builtin_gets_its_recommended_settings():
    """A dataset's recommendations are keyed by objective name: a plugin's VAE variant (a subclass,
    or an objective whose Config extends the VAE's) had none of the paper's β's."""
    import dataclasses

    import genvae
    from genvae.core.config import merge_user
    from genvae.core.plugins import use_plugins
    from genvae.core.run import resolve
    from genvae.plugins.objectives.vae import VAE, VAEConfig

    class Derived(VAE):
        pass

    @dataclasses.dataclass
    class WarmupConfig(VAEConfig):
        warmup: int = 10

    class ConfigExtended(genvae.Objective):  # as the tutorial's: not a VAE subclass, its Config extends the VAE's
        Config = WarmupConfig
        phases = VAE.phases
        begin_step = VAE.begin_step
        phase_loss = VAE.phase_loss

    class Plugin:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_objectives(register):
            register("derived-vae", Derived)
            register("warmup-vae", ConfigExtended)

    use_plugins(load_plugins(extra=[("mine", Plugin)]))
    try:
        vae, _ = resolve(merge_user(None, [], {"objective.name": "vae", "data.name": "8gaussians"}))
        for name in ("derived-vae", "warmup-vae"):
            cfg, _ = resolve(merge_user(None, [], {"objective.name": name, "data.name": "8gaussians"}))
            assert (cfg.objective["beta_rec"], cfg.objective["beta_kl"]) == (vae.objective["beta_rec"], vae.objective["beta_kl"]) == (0.8, 0.05)
    finally:
        use_plugins(None)


def test_a_hook_without_its_marker_is_named():
    class Unmarked:
        @staticmethod
        def genvae_register_objectives(register):  # no @genvae.hookimpl: pluggy never calls it
            from genvae.plugins.objectives.vae import VAE

            register("unmarked-vae", VAE)

    plugins = load_plugins(extra=[("unmarked", Unmarked)])
    assert plugins.info["unmarked"].error == ("genvae_register_objectives lacks the @genvae.hookimpl marker, so genvae never calls it; "
                                              "decorate it with @genvae.hookimpl")  # fmt: skip
    with pytest.raises(PluginError, match="plugin unmarked failed to load: genvae_register_objectives lacks the @genvae.hookimpl marker"):
        plugins.objectives.get("unmarked-vae")
    assert not [name for name, i in load_plugins().info.items() if i.error]  # the built-ins are all marked


def test_two_packages_with_one_entry_point_name_are_both_named(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, GOOD_PLUGIN)
    other = tmp_path / "genvae_otherplug-1.0.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: genvae-otherplug\nVersion: 1.0\n")
    (other / "entry_points.txt").write_text("[genvae]\nfakeplug = genvae_fakeplug\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD")
    plugins = load_plugins()
    loaded = plugins.info["fakeplug"].distribution
    skipped = next(i for name, i in plugins.info.items() if name.startswith("fakeplug ("))
    assert {loaded, skipped.distribution} == {"genvae-fakeplug", "genvae-otherplug"}
    assert f"its entry point name 'fakeplug' is taken by {loaded}'s plugin; give the entry point another name" in skipped.error


class L1Loss:
    @staticmethod
    @genvae.hookimpl
    def genvae_register_losses(register):
        register("l1", lambda x, x_rec: (x - x_rec).abs().flatten(1).sum(1))


def test_a_plugin_reconstruction_loss_is_usable_by_objectives():
    import torch

    from genvae.core.config import merge_user
    from genvae.core.losses import reconstruction_error
    from genvae.core.plugins import use_plugins
    from genvae.core.run import resolve

    with pytest.raises(Exception, match="unknown reconstruction loss 'l1'"):
        resolve(merge_user(None, ["objective.recon_loss=l1"], {}))
    use_plugins(load_plugins(extra=[("l1", L1Loss)]))
    cfg, _ = resolve(merge_user(None, ["objective.recon_loss=l1"], {}))
    assert cfg.objective["recon_loss"] == "l1"
    assert reconstruction_error(torch.zeros(2, 3), torch.ones(2, 3), "l1").tolist() == [3.0, 3.0]

    class MeanL1:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_losses(register):
            register("mean-l1", lambda x, x_rec: (x - x_rec).abs().mean())  # one number for the batch: would broadcast

    use_plugins(load_plugins(extra=[("mean-l1", MeanL1)]))
    with pytest.raises(PluginError, match=r"reconstruction loss 'mean-l1' returned \(\) for a batch of 2; it must return one value per sample, shape \(2,\)"):
        reconstruction_error(torch.zeros(2, 3), torch.ones(2, 3), "mean-l1")
    use_plugins(None)


def _list_plugins(columns: int = 80) -> str:
    from typer.testing import CliRunner

    from genvae.cli import app

    result = CliRunner().invoke(app, ["plugins", "list"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_plugins_list_never_cuts_names_off():
    output = _list_plugins(80)
    assert "…" not in output
    for info in load_plugins().info.values():
        assert info.name in output
        for names in info.registers.values():
            assert all(name in output for name in names), names


def test_genvae_plugins_loads_modules_without_installing(tmp_path, monkeypatch):
    (tmp_path / "genvae_tryplug.py").write_text(textwrap.dedent(GOOD_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GENVAE_PLUGINS", " genvae_tryplug , ")  # autoload stays disabled (conftest)
    plugins = load_plugins()
    assert plugins.objectives.entry("fake-vae").plugin == "genvae_tryplug"
    info = plugins.info["genvae_tryplug"]
    assert (info.distribution, info.error) == ("GENVAE_PLUGINS", None)
    assert "genvae_tryplug" in _list_plugins() and "fake-vae" in _list_plugins()

    monkeypatch.setenv("GENVAE_BLOCK_PLUGINS", "genvae_tryplug")
    assert "fake-vae" not in load_plugins().objectives
    monkeypatch.delenv("GENVAE_BLOCK_PLUGINS")
    monkeypatch.setenv("GENVAE_PLUGINS", "genvae_tryplug,genvae.plugins.objectives.vae")  # a module loaded already (a built-in here)
    twice = load_plugins().info["genvae.plugins.objectives.vae"]
    assert twice.error == "is already loaded as plugin 'objectives.vae'; leave it out of GENVAE_PLUGINS"


def test_a_broken_genvae_plugins_module_is_listed_and_named_by_unknown_name_errors(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from genvae.cli import app

    (tmp_path / "genvae_trybroken.py").write_text("import genvae_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GENVAE_PLUGINS", "genvae_trybroken")
    plugins = load_plugins()
    error = "ModuleNotFoundError: No module named 'genvae_no_such_dependency'"
    assert plugins.info["genvae_trybroken"].error == error
    assert "soft-intro" in plugins.objectives
    with pytest.raises(PluginError) as raised:
        plugins.objectives.get("my-vae")
    assert str(raised.value) == (
        "unknown objective 'my-vae'; did you mean 'vae'? available: intro, soft-intro, vae "
        f"(note: plugin genvae_trybroken failed to load: {error}; see `genvae plugins list`)"
    )
    listing = " ".join(_list_plugins(200).split())
    assert "genvae_trybroken" in listing and f"broken: {error}" in listing

    result = CliRunner().invoke(app, ["train", "--objective", "my-vae", "--data", "8gaussians", "--dry-run"])
    assert result.exit_code == 2
    assert "plugin genvae_trybroken failed to load: ModuleNotFoundError" in " ".join(result.output.split())


def test_unknown_name_errors_say_nothing_of_plugins_when_none_is_broken():
    with pytest.raises(PluginError) as raised:
        load_plugins().datasets.get("moons")
    assert "note:" not in str(raised.value)


class DatasetNamingItsArchitecture:
    import genvae

    @staticmethod
    @genvae.hookimpl
    def genvae_register_datasets(register):
        from genvae.plugins.datasets.toy2d import Toy2D

        def wants(arch: str = "residual"):
            data = Toy2D("8gaussians")
            data.recommended = {**data.recommended, "arch": {"name": arch, "hidden": 64}}
            return data

        register("wants-an-arch", wants)


def test_a_dataset_recommends_its_architecture_and_the_user_overrides_it():
    from genvae.core.config import merge_user
    from genvae.core.plugins import use_plugins
    from genvae.core.run import resolve
    from genvae.errors import ConfigError

    cfg, _ = resolve(merge_user(None, [], {"data.name": "digits"}))
    assert cfg.arch["name"] == "residual" and cfg.arch["channels"] == [16, 32]  # the dataset's network, with its options
    cfg, _ = resolve(merge_user(None, [], {"data.name": "digits", "arch.name": "mlp"}))
    assert cfg.arch["name"] == "mlp" and cfg.arch["z_dim"] == 16  # --arch wins; shared options still apply
    for resolution in (64, 32):  # both of its recommended networks
        cfg, _ = resolve(merge_user(None, [f"data.resolution={resolution}"], {"data.name": "shapes3d-synthetic"}))
        assert cfg.arch["name"] == "lord"
    with pytest.raises(ConfigError, match=r"architecture 'residual' has no option arch.hidden \(mlp has it\).*'residual' is the architecture dataset 'digits' recommends; choose another with --arch"):
        resolve(merge_user(None, ["arch.hidden=8"], {"data.name": "digits"}))
    with pytest.raises(ConfigError, match="data.z_dim is not an option of the data section; it belongs to arch"):
        resolve(merge_user(None, ["data.z_dim=8"], {"data.name": "digits"}))

    use_plugins(load_plugins(extra=[("wants", DatasetNamingItsArchitecture)]))
    cfg, _ = resolve(merge_user(None, ["data.arch=mlp"], {"data.name": "wants-an-arch"}))
    assert cfg.arch["name"] == "mlp" and cfg.arch["hidden"] == 64
    with pytest.raises(ConfigError, match="dataset 'wants-an-arch' recommends architecture 'pointy', which is not installed; install its plugin or choose one with --arch"):
        resolve(merge_user(None, ["data.arch=pointy"], {"data.name": "wants-an-arch"}))


def test_a_plugin_dataset_draws_its_samples_without_a_plot_samples_of_its_own(tmp_path):
    """`genvae sample RUN --out x.png` of a dataset built from the docs said it cannot draw samples."""
    import torch
    from PIL import Image

    from genvae.core.interfaces import DataSource
    from genvae.errors import DataError

    class Minimal(DataSource):
        def __init__(self, shape):
            self.shape = shape

        def train_stream(self, batch_size, seed, rank=0, world_size=1):
            raise NotImplementedError

    Minimal((1, 8, 8)).plot_samples(torch.rand(16, 1, 8, 8), tmp_path / "grid.png")
    Minimal((3,)).plot_samples(torch.randn(100, 3), tmp_path / "scatter.png")
    assert Image.open(tmp_path / "grid.png").size[0] > 8 and Image.open(tmp_path / "scatter.png").size[0] > 100
    with pytest.raises(DataError, match=r"cannot draw samples of shape \(2, 3\) as a picture; save them as .pt or .npy"):
        Minimal((2, 3)).plot_samples(torch.randn(4, 2, 3), tmp_path / "x.png")
