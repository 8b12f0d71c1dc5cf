"""Architecture sizes below 1 are refused in one line before anything trains."""

import pytest
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.plugins import get_plugins
from genvae.errors import ConfigError


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("arch.z_dim=0", "arch.z_dim must be a positive integer, got 0"),
        ("arch.hidden=-5", "arch.hidden must be a positive integer, got -5"),
        ("arch.depth=-1", "arch.depth must be 0 (a linear map) or more hidden layers, got -1"),
        ("arch.output=relu", "arch.output must be one of linear, sigmoid, got 'relu'"),
    ],
)
def test_mlp_sizes_are_checked_through_the_cli(tmp_path, setting, message):
    result = CliRunner().invoke(app, ["train", "--data", "8gaussians", "--objective", "vae", "--steps", "1",
                                      "--set", setting, "--run-dir", str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_linear_mlp_is_allowed():
    arch = get_plugins().architectures.get("mlp")
    assert arch.encoder(data_shape=(2,), z_dim=2, depth=0).latent_groups == {"z": 2}


def test_a_sigmoid_output_bounds_the_mlp_decoder_to_the_unit_interval():
    import torch

    arch = get_plugins().architectures.get("mlp")
    torch.manual_seed(0)
    linear = arch.decoder(data_shape=(1, 4, 4), z_dim=3, depth=1, hidden=8)
    torch.manual_seed(0)
    bounded = arch.decoder(data_shape=(1, 4, 4), z_dim=3, depth=1, hidden=8, output="sigmoid")
    z = 50 * torch.randn(64, 3)
    assert torch.allclose(bounded(z), torch.sigmoid(linear(z)))  # same weights, the sigmoid on top
    assert not ((linear(z) > 0) & (linear(z) < 1)).all()


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("residual", {"data_shape": (1, 16, 16), "channels": [8, 8], "z_dim": 0}, "arch.z_dim"),
        ("lord", {"data_shape": (3, 32, 32), "channels": [8, 8], "content_dim": 0}, "arch.content_dim"),
    ],
)
def test_convolutional_latent_sizes_are_checked(name, options, message):
    with pytest.raises(ConfigError, match=message):
        get_plugins().architectures.get(name).encoder(**options)


def test_per_group_weights_must_name_the_architectures_groups():
    result = CliRunner().invoke(app, ["train", "--set", "objective.beta_neg={class=1, content=2}", "--dry-run"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "objective.beta_neg names latent groups ['class', 'content'], but architecture 'mlp' has ['z']" in text
    ok = CliRunner().invoke(app, ["train", "--set", "objective.beta_neg={z=3}", "--dry-run"])
    assert ok.exit_code == 0, ok.output


def test_an_option_without_annotation_is_checked_against_its_defaults_type():
    import inspect

    from genvae.core.config import signature_options, validate_options
    from genvae.errors import ConfigError

    def encoder(data_shape, num_classes=0, width=32, name="x"):  # a plugin written without annotations
        pass

    options = signature_options(encoder)
    assert validate_options("arch", "mine", {"width": 64}, options)["width"] == 64
    with pytest.raises(ConfigError, match="arch.width = 'abc' has the wrong type; expected int"):
        validate_options("arch", "mine", {"width": "abc"}, options)
    with pytest.raises(ConfigError, match=r"arch.name = nan has the wrong type; expected str \(a --set value is read as TOML, where nan is not text: "
                                          r"quote it, --set 'arch.name=\"TEXT\"'\)"):
        validate_options("arch", "mine", {"name": float("nan")}, options)
    assert inspect.signature(encoder).parameters["name"].default == validate_options("arch", "mine", {}, options)["name"]


def test_a_network_that_does_not_record_its_options_is_refused_before_training(tmp_path, genvae_plugins):
    import genvae
    from genvae.errors import PluginError
    from genvae.plugins.architectures.mlp import MLPDecoder, MLPEncoder

    class Forgetful(MLPEncoder):
        def __init__(self, data_shape=(2,), num_classes=0, z_dim=2, hidden=8, depth=1):
            super().__init__(data_shape, num_classes, z_dim, hidden, depth)
            self.config = {}  # as a plugin calling super().__init__() without its options leaves it

    class Plugin:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_architectures(register):
            register("forgetful", genvae.core.interfaces.Architecture(Forgetful, MLPDecoder))

    genvae_plugins(Plugin)
    with pytest.raises(PluginError, match="Forgetful does not record data_shape, num_classes, .*hidden.* in its config, so its export could not be rebuilt; pass every constructor argument on"):
        genvae.train(tmp_path / "run", objective="vae", arch="forgetful", data="8gaussians", steps=2, settings={"arch.hidden": 8})
    assert not (tmp_path / "run" / "encoder").exists()
