"""Feature extractors as plugins, and the ``classifier`` extractor (FID without Inception)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.hookspecs import hookimpl
from genvae.errors import ConfigError, DataError, PluginError
from genvae.plugins.metrics import classifier as clfm
from genvae.plugins.metrics import distances, features, fid as fidm


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    """A classifier trained on digits through the CLI, as a user makes one."""
    out = tmp_path_factory.mktemp("clf") / "digits-clf"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["eval", "train-classifier", "digits", "--out", str(out), "--steps", "150"])
    finally:
        torch.set_num_threads(old)
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    return out


def test_classifier_learns_and_records_itself(digits_classifier):
    info = json.loads((digits_classifier / "config.json").read_text())
    assert info["shape"] == [1, 16, 16] and info["num_classes"] == 10 and info["steps"] == 150
    assert info["network"] == clfm.NETWORK
    assert info["test_accuracy"] > 0.7  # chance is 0.1
    extractor = features.build_feature_extractor("classifier", feature_weights=digits_classifier)
    assert extractor.settings()["weights_sha256"] == info["weights_sha256"]
    assert extractor.settings()["classifier_data"] == "digits"


def test_classifier_features_do_not_depend_on_the_batch(digits_classifier):
    extractor = features.build_feature_extractor("classifier", feature_weights=digits_classifier)
    x = torch.rand(12, 1, 16, 16)
    alone = extractor(x[:3])
    together = extractor(torch.cat([x[:3], torch.rand(20, 1, 16, 16)]))[:3]
    assert alone.shape == (3, clfm.FEATURE_DIM)
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-6)
    extractor.train()  # stays in eval mode
    assert not extractor.training


def test_classifier_separates_real_digits_from_noise_in_fid(digits_classifier, tmp_path):
    ref = tmp_path / "digits-clf.npz"
    stats = fidm.compute_reference_stats("digits", ref, features="classifier", feature_weights=digits_classifier,
                                         num_samples=400, batch_size=100, progress=False)  # fmt: skip
    test = fidm.compute_reference_stats("digits", None, features="classifier", feature_weights=digits_classifier,
                                        split="test", num_samples=290, batch_size=100, progress=False)  # fmt: skip
    noise = features.build_feature_extractor("classifier", feature_weights=digits_classifier)(torch.rand(300, 1, 16, 16)).numpy()
    mu_n, sigma_n = distances.feature_statistics(noise)
    real_vs_real = distances.frechet_distance(test["mu"], test["sigma"], stats["mu"], stats["sigma"])
    noise_vs_real = distances.frechet_distance(mu_n, sigma_n, stats["mu"], stats["sigma"])
    assert distances.frechet_distance(stats["mu"], stats["sigma"], stats["mu"], stats["sigma"]) == pytest.approx(0.0, abs=1e-6)
    assert noise_vs_real > 5 * real_vs_real


def test_reference_from_another_classifier_is_refused(digits_classifier, tmp_path):
    ref = tmp_path / "ref.npz"
    fidm.compute_reference_stats("digits", ref, features="classifier", feature_weights=digits_classifier,
                                 num_samples=50, batch_size=50, progress=False)  # fmt: skip
    saved = fidm.load_stats(ref)
    other = features.build_feature_extractor("classifier", feature_weights=digits_classifier).settings()
    fidm.check_compatible(saved["settings"], other, str(ref))  # same classifier: fine
    with pytest.raises(ConfigError, match=f"weights_sha256.*pass the weights it was made with \\(--feature-weights={digits_classifier}\\)"):
        fidm.check_compatible(saved["settings"], {**other, "weights_sha256": "0" * 64}, str(ref))


def test_a_reference_made_with_a_classifier_finds_it_again(digits_classifier, digits_run_dir, tmp_path):
    """Its features and weights are in the .npz: ``eval fid RUN --ref stats.npz`` needs no --features / --feature-weights."""
    import genvae

    ref = tmp_path / "ref.npz"
    fidm.compute_reference_stats("digits", ref, features="classifier", feature_weights=digits_classifier, num_samples=50, batch_size=50, progress=False)
    result = fidm.evaluate_fid(genvae.load_run(digits_run_dir), ref, num_samples=20, batch_size=20, progress=False, write=False)
    assert result["settings"]["weights_sha256"] == fidm.load_stats(ref)["settings"]["weights_sha256"] and result["fid"] > 0


def test_classifier_errors_name_the_fix(digits_classifier, tmp_path):
    with pytest.raises(ConfigError, match="train-classifier"):
        features.build_feature_extractor("classifier")
    with pytest.raises(DataError, match="holds no classifier"):
        features.build_feature_extractor("classifier", feature_weights=tmp_path)
    extractor = features.build_feature_extractor("classifier", feature_weights=digits_classifier / "model.safetensors")  # the file works too
    with pytest.raises(DataError, match=r"shape \(1, 16, 16\)"):
        extractor(torch.rand(2, 3, 32, 32))
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "config.json").write_text((digits_classifier / "config.json").read_text())
    data = bytearray((digits_classifier / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (tampered / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DataError, match="SHA-256"):
        features.build_feature_extractor("classifier", feature_weights=tampered)
    older = tmp_path / "older"
    older.mkdir()
    (older / "model.safetensors").write_bytes((digits_classifier / "model.safetensors").read_bytes())
    info = json.loads((digits_classifier / "config.json").read_text())
    del info["network"]  # as written before the network was recorded
    (older / "config.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="older network.*retrain it"):
        features.build_feature_extractor("classifier", feature_weights=older)
    with pytest.raises(DataError, match="labelled"):
        clfm.train_classifier(SimpleNamespace(kind="images", shape=(1, 8, 8), num_classes=0), "unlabelled", tmp_path / "x", steps=1)


class ConstantFeatures(torch.nn.Module):
    name, dim = "constant", 4

    def settings(self):
        return {"features": self.name, "dim": self.dim}

    def forward(self, images):
        return images.flatten(1)[:, :1].repeat(1, self.dim)


class FeaturePlugin:
    @staticmethod
    @hookimpl
    def genvae_register_features(register):
        register("constant", lambda **_: ConstantFeatures())


class ClashingFeaturePlugin:
    @staticmethod
    @hookimpl
    def genvae_register_features(register):
        register("random-conv", lambda **_: ConstantFeatures())


def test_a_third_party_feature_extractor_is_found_by_name():
    from genvae.core.plugins import load_plugins, use_plugins

    plugins = load_plugins(extra=[("my-features", FeaturePlugin())])
    assert {"inception", "random-conv", "classifier", "constant"} <= set(plugins.features.names())
    use_plugins(plugins)
    stats = fidm.compute_reference_stats("digits", None, features="constant", num_samples=20, batch_size=10, progress=False)
    assert stats["settings"]["features"] == "constant" and stats["mu"].shape == (4,)
    assert np.isfinite(stats["sigma"]).all()
    with pytest.raises(PluginError, match="did you mean"):
        features.build_feature_extractor("constnat")
    clashing = load_plugins(extra=[("clash", ClashingFeaturePlugin())])  # the second of a name is broken, the rest keeps working
    assert "feature extractor 'random-conv' is registered by both 'metrics.features' and 'clash'" in clashing.info["clash"].error
    assert clashing.features.entry("random-conv").plugin == "metrics.features"


def test_a_classifier_of_a_labelled_folder_says_its_accuracy_is_on_training_images(tmp_path):
    from PIL import Image

    for c, colour in enumerate(("red", "green")):
        (tmp_path / "pets" / colour).mkdir(parents=True)
        for i in range(6):
            pixels = np.zeros((12, 12, 3), dtype=np.uint8)
            pixels[..., c] = 100 + 20 * i
            Image.fromarray(pixels).save(tmp_path / "pets" / colour / f"{i}.png")
    out = tmp_path / "clf"
    result = CliRunner().invoke(app, ["eval", "train-classifier", f"folder:path={tmp_path / 'pets'},labels=true,resolution=8", "--out", str(out), "--steps", "5"])
    assert result.exit_code == 0, result.output
    assert "on its training images (folder:/" in result.output and "pets,labels=true,resolution=8" in result.output and "has no held-out split" in " ".join(result.output.split())
    info = json.loads((out / "config.json").read_text())
    assert info["num_classes"] == 2 and "train_accuracy" in info and "test_accuracy" not in info
    extractor = features.build_feature_extractor("classifier", feature_weights=out)
    settings = extractor.settings()
    assert settings["classifier_train_accuracy"] == info["train_accuracy"] and "classifier_test_accuracy" not in settings
    with pytest.raises(DataError, match=r"shape \(3, 8, 8\), got \(1, 8, 8\).*unless its spec says channels=1: folder:path=DIR,channels=1,resolution=8"):
        extractor(torch.rand(2, 1, 8, 8))  # a greyscale run's samples against an RGB folder's classifier
