"""Evaluation metrics: Fréchet distance, FID Inception, KID, precision / recall, OOD scores and AUROC.

Reference implementations (pytorch-fid, torch-fidelity) are test-only dependencies; their tests
skip when they are not installed. Nothing is downloaded: the Inception runs with random weights.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from genvae import bench_ood
from genvae.core.interfaces import Batch, BatchStream, DataSource
from genvae.errors import ConfigError, DataError, PluginError, RunDirError
from genvae.plugins.metrics import distances, features, fid as fidm, image_prep
from genvae.plugins.metrics import inception as incm
from genvae.plugins.metrics import ood as oodm


def random_stats(d: int, n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + shift
    return f.mean(0), np.cov(f, rowvar=False)


@pytest.fixture(scope="module")
def inception_net() -> incm.FIDInceptionV3:
    return randomized_inception()


def randomized_inception(seed: int = 1) -> incm.FIDInceptionV3:
    """FID Inception with random conv weights and random (non-trivial) BatchNorm statistics."""
    torch.manual_seed(seed)
    net = incm.FIDInceptionV3()
    g = torch.Generator().manual_seed(seed)
    state = net.state_dict()
    for key, value in state.items():
        if key.endswith(("running_var", "bn.weight")):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith(("running_mean", "bn.bias")):
            state[key] = torch.randn(value.shape, generator=g) * 0.1
    net.load_state_dict(state)
    return net


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------


def test_frechet_distance_matches_pytorch_fid():
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    for seed in range(3):
        mu1, s1 = random_stats(64, 500, seed)
        mu2, s2 = random_stats(64, 500, seed + 10, shift=0.2)
        ours = distances.frechet_distance(mu1, s1, mu2, s2)
        theirs = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_handles_singular_covariances():
    f = np.random.default_rng(0).normal(size=(40, 64))  # 40 samples in 64-d: rank-deficient covariance
    mu, sigma = distances.feature_statistics(f)
    assert distances.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8 * np.trace(sigma))
    other = distances.feature_statistics(f[:, ::-1] + 1.0)
    value = distances.frechet_distance(mu, sigma, *other)
    assert math.isfinite(value) and value > 0
    with pytest.raises(DataError, match="do not match"):
        distances.frechet_distance(mu, sigma, mu[:10], sigma[:10, :10])


# --------------------------------------------------------------------------------------------
# Inception network and feature extractors
# --------------------------------------------------------------------------------------------


def test_inception_forward_equals_pytorch_fid(inception_net):
    pfi = pytest.importorskip("pytorch_fid.inception")
    ours = inception_net
    state = ours.state_dict()
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: dict(state)):
        theirs = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False).eval()
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = theirs(x)[0].flatten(1)
    got = ours(x)
    assert got.shape == (2, 2048)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_tf1_bilinear_resize_equals_torch_fidelity():
    tf = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    x = torch.randint(0, 256, (2, 3, 28, 32), generator=torch.Generator().manual_seed(0)).float()
    expected = tf.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    torch.testing.assert_close(image_prep.resize_tf1_bilinear(x, 299), expected, rtol=0, atol=1e-4)


def test_pil_bicubic_resize_and_quantisation():
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    q = image_prep.quantize_uint8(x)
    assert q.dtype == torch.uint8 and torch.equal(q, (x * 255).round().to(torch.uint8))
    assert torch.equal(image_prep.quantize_uint8(torch.tensor([-0.5, 0.5 / 255, 1.7])), torch.tensor([0, 0, 255], dtype=torch.uint8))  # round half to even
    y = incm.prepare_inception_input(q, "pil-bicubic")
    assert y.shape == (1, 3, 299, 299) and y.min() >= -1.0 and y.max() < 1.0
    with pytest.raises(ConfigError, match="resize"):
        incm.prepare_inception_input(q, "nearest")


def test_features_do_not_depend_on_the_batch(inception_net):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 20, 20, generator=g)
    extractor = features.build_feature_extractor("random-conv")
    extractor.train()  # stays in eval mode
    assert not extractor.training
    together = extractor(images)
    alone = torch.cat([extractor(images[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-6)
    # the Inception itself: BatchNorm with running statistics, even after .train()
    net = inception_net.train()
    x = torch.rand(2, 3, 80, 80, generator=g) * 2 - 1
    torch.testing.assert_close(net(x[1:2]), net(x)[1:2], rtol=1e-5, atol=1e-5)


def test_random_conv_features_are_fixed_by_their_seed():
    a, b, c = features.RandomConvFeatures(0), features.RandomConvFeatures(0), features.RandomConvFeatures(1)
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert a.settings()["features"] == "random-conv"
    with pytest.raises(PluginError, match="unknown feature extractor"):
        features.build_feature_extractor("vgg")


# --------------------------------------------------------------------------------------------
# Weight files
# --------------------------------------------------------------------------------------------


def test_missing_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(incm.WEIGHTS_ENV, raising=False)
    with pytest.raises(ConfigError, match="pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"):
        incm.resolve_weights_path(None)
    with pytest.raises(DataError, match="does not exist"):
        incm.resolve_weights_path(tmp_path / "nope.pth")
    monkeypatch.setenv(incm.WEIGHTS_ENV, str(tmp_path / "from-env.pth"))
    with pytest.raises(DataError, match="from-env.pth does not exist"):
        features.build_feature_extractor("inception")


def test_weight_file_with_a_wrong_hash_is_refused(tmp_path):
    fake = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    fake.write_bytes(b"not the inception weights")
    with pytest.raises(DataError, match="SHA-256 .* published file has 6726825d0af5f729"):
        incm.load_fid_inception(fake)
    sized = tmp_path / "renamed.pth"  # unknown name but the published size: must match the hash
    with open(sized, "wb") as f:
        f.truncate(incm.KNOWN_SIZE)
    with pytest.raises(DataError, match="truncated, corrupt or a different network"):
        incm.check_weights_file(sized)


def test_unknown_weight_files_load_unverified_and_wrong_layouts_are_refused(tmp_path, inception_net):
    net = inception_net
    own = tmp_path / "my-inception.pth"
    # torch-fidelity / pytorch-fid layouts: torchvision names, maybe with num_batches_tracked
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()} | {"Conv2d_1a_3x3.bn.num_batches_tracked": torch.tensor(0)}, own)
    with pytest.warns(UserWarning, match="not one of the published"):
        loaded, info = incm.load_fid_inception(own)
    assert info.verified == "unverified" and info.source == "unknown"
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="does not hold the FID Inception weights"):
            incm.load_fid_inception(wrong)


# --------------------------------------------------------------------------------------------
# KID and precision / recall
# --------------------------------------------------------------------------------------------


def test_kid_matches_torch_fidelity():
    kid_mod = pytest.importorskip("torch_fidelity.metric_kid")
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(300, 32)).astype(np.float32)
    f2 = (rng.normal(size=(250, 32)) * 1.1 + 0.1).astype(np.float32)
    theirs = kid_mod.kid_features_to_metric(torch.from_numpy(f1), torch.from_numpy(f2), kid_subsets=10, kid_subset_size=100, verbose=False)
    mean, std, size = distances.kernel_inception_distance(f1, f2, subsets=10, subset_size=100)
    assert size == 100
    assert mean == pytest.approx(theirs[kid_mod.KEY_METRIC_KID_MEAN], rel=1e-4)
    assert std == pytest.approx(theirs[kid_mod.KEY_METRIC_KID_STD], rel=1e-4)


def test_precision_recall_match_torch_fidelity():
    prc = pytest.importorskip("torch_fidelity.metric_prc")
    rng = np.random.default_rng(1)
    gen = torch.from_numpy(rng.normal(size=(200, 8)).astype(np.float32))
    real = torch.from_numpy((rng.normal(size=(220, 8)) * 1.5 + 0.3).astype(np.float32))
    theirs = prc.prc_features_to_metric(gen, real, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    precision, recall = distances.precision_recall(gen, real, k=3, chunk=64)
    assert precision == pytest.approx(theirs[prc.KEY_METRIC_PRECISION], abs=1 / 200)
    assert recall == pytest.approx(theirs[prc.KEY_METRIC_RECALL], abs=1 / 220)
    assert precision > recall  # the generated set is the narrower one


# --------------------------------------------------------------------------------------------
# End to end on a tiny run (digits, MLP, random-conv features)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(digits_run_dir):
    from genvae.core.run import load_run

    return load_run(digits_run_dir)


def test_fid_reference_is_saved_reused_and_checked(tiny_run, tmp_path):
    ref = tmp_path / "digits.npz"
    stats = fidm.compute_reference_stats("digits", ref, features="random-conv", num_samples=120, batch_size=50, keep_features=100, progress=False)
    saved = fidm.load_stats(ref)
    assert saved["n"] == 120 and saved["features"].shape == (100, 256) and saved["settings"]["features"] == "random-conv"
    np.testing.assert_allclose(saved["sigma"], stats["sigma"])
    # the reference against itself
    assert distances.frechet_distance(saved["mu"], saved["sigma"], stats["mu"], stats["sigma"]) == pytest.approx(0.0, abs=1e-6)

    result = fidm.evaluate_fid(tiny_run, ref, num_samples=120, batch_size=50, kid_subset_size=50, kid_subsets=5, progress=False)
    assert result["fid"] > 0 and 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
    assert result["settings"]["features"] == "random-conv" and result["comparable_to_published"] is False
    lines = (tiny_run.path / "metrics" / "fid.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["fid"] == pytest.approx(result["fid"])

    other = tmp_path / "seed1.npz"
    fidm.save_stats(other, {**saved, "settings": {**saved["settings"], "seed": 1, "weights_sha256": "x"}})
    with pytest.raises(ConfigError, match="other feature settings"):
        fidm.evaluate_fid(tiny_run, other, num_samples=10, features="random-conv", progress=False, write=False)
    with pytest.raises(DataError, match="fid-ref"):
        fidm.evaluate_fid(tiny_run, tmp_path / "missing.npz", num_samples=10, progress=False)


@pytest.mark.filterwarnings("ignore:.*rank-deficient")
def test_an_npz_of_images_is_a_reference_not_a_statistics_file(tiny_run, tmp_path):
    """--ref images.npz was read as statistics ("needs mu and sigma"), and the spec form was "not found"."""
    from genvae.plugins.datasets.images import Digits

    x = Digits().split_data("test")[0].numpy()
    np.savez(tmp_path / "digits.npz", x=x)
    copy = type(tiny_run)(tmp_path / "run", tiny_run.config, tiny_run.data, tiny_run.encoder, tiny_run.decoder, tiny_run.step)
    options = dict(num_samples=40, batch_size=20, features="random-conv", kid_subset_size=20, kid_subsets=2, progress=False, write=False)
    assert fidm.evaluate_fid(copy, str(tmp_path / "digits.npz"), **options)["ref_n"] == len(x)
    assert fidm.evaluate_fid(copy, f"image-array:path={tmp_path / 'digits.npz'}", **options)["ref_n"] == len(x)
    assert not fidm.is_stats_file(str(tmp_path / "digits.npz")) and fidm.is_stats_file(str(tmp_path / "stats.npz"))


@pytest.mark.filterwarnings("ignore:.*rank-deficient")
def test_a_dataset_that_only_streams_is_a_reference_of_as_many_images_as_generated(tiny_run, tmp_path):
    """A plugin dataset with train_stream / test_batch only (as plugins.md describes one) as --ref
    said "cannot list its train split; give --num-samples", which was given."""
    from genvae.core.interfaces import Batch, DataSource
    from genvae.plugins.datasets.images import Digits

    digits = Digits()

    class Streaming(DataSource):
        name, kind, shape, num_classes = "streaming", "images", digits.shape, 0

        def train_stream(self, batch_size, seed, rank=0, world_size=1):
            return (Batch(digits.get(torch.randint(0, 1000, (batch_size,)), "train").x) for _ in iter(int, 1))

        def test_batch(self, n, seed=0):
            return Batch(digits.get(torch.arange(n), "test").x)

    copy = type(tiny_run)(tmp_path / "run", tiny_run.config, tiny_run.data, tiny_run.encoder, tiny_run.decoder, tiny_run.step)
    result = fidm.evaluate_fid(copy, Streaming(), num_samples=40, batch_size=20, features="random-conv", kid_subset_size=20, kid_subsets=2,
                               progress=False, write=False)  # fmt: skip
    assert result["ref_n"] == 40 and result["fid"] > 0


def test_generated_samples_do_not_depend_on_batching(tiny_run):
    z_dim = sum(tiny_run.encoder.latent_groups.values())
    whole = fidm.generated_batch_fn(tiny_run.decoder, z_dim, 0, 10, 10, 3, "cpu")(0)
    again = fidm.generated_batch_fn(tiny_run.decoder, z_dim, 0, 10, 10, 3, "cpu")(0)
    assert torch.equal(whole, again) and whole.min() >= 0 and whole.max() <= 1


# --------------------------------------------------------------------------------------------
# OOD: likelihoods, IWAE, AUROC
# --------------------------------------------------------------------------------------------


def test_auroc_against_hand_made_scores():
    assert oodm.auroc([3.0, 2.0, 1.0], [0.0, -1.0]) == 1.0  # OOD scored lower: detected
    assert oodm.auroc([0.0, -1.0], [3.0, 2.0]) == 0.0
    # detector −score: in {−1, −3}, OOD {−2, 0}; OOD above in for 3 of 4 pairs
    assert oodm.auroc([1.0, 3.0], [2.0, 0.0]) == pytest.approx(0.75)
    with pytest.raises(DataError, match="NaN"):
        oodm.auroc([1.0, float("nan")], [0.0])


def test_log_mean_exp_is_stable_for_very_negative_values():
    u = torch.tensor([[-1e4, -1e4 - 1.0, -1e4 - 2.0]], dtype=torch.float64).T
    expected = -1e4 + math.log((1 + math.exp(-1) + math.exp(-2)) / 3)
    assert oodm.log_mean_exp(u, dim=0).item() == pytest.approx(expected, rel=1e-12)
    assert torch.isinf(u.exp().mean(0).log()).all()  # what the naive formula gives
    assert oodm.log_mean_exp(torch.full((5,), -1e30), dim=0).item() == pytest.approx(-1e30)


@pytest.mark.parametrize("beta_rec", [1.0, 0.3])
def test_decoder_likelihood_is_the_gaussian_implied_by_the_loss(beta_rec):
    x, x_rec = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    from genvae.core.losses import reconstruction_error

    mse = torch.distributions.Normal(x_rec, math.sqrt(1 / (2 * beta_rec))).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(oodm.log_likelihood(x, x_rec, "mse", beta_rec), mse)
    gauss = torch.distributions.Normal(x_rec, math.sqrt(1 / beta_rec)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(oodm.log_likelihood(x, x_rec, "gaussian", beta_rec), gauss)
    # up to a constant that depends only on the shape: −β_rec·L_rec for mse
    diff = oodm.log_likelihood(x, x_rec, "mse", beta_rec) + beta_rec * reconstruction_error(x, x_rec, "mse")
    torch.testing.assert_close(diff, diff[:1].expand(3))


class LinearGaussianVAE:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, ½I) (the 'mse' likelihood, β_rec = 1): log p(x) is exact,
    N(x; b, WWᵀ + ½I), and so is the posterior N(S·2Wᵀ(x − b), S), S = (I + 2WᵀW)⁻¹."""

    def __init__(self, d_x: int = 12, d_z: int = 3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(d_x, d_z, generator=g, dtype=torch.float64) * 0.5
        self.b = torch.rand(d_x, generator=g, dtype=torch.float64)
        self.s = torch.linalg.inv(torch.eye(d_z, dtype=torch.float64) + 2 * self.w.T @ self.w)
        self.mean_shift, self.logvar_shift = 0.0, 0.0

    def decoder(self, z, y=None):
        return (z @ self.w.T + self.b).view(-1, 1, 3, 4)

    def encoder(self, x, y=None):
        # a diagonal Gaussian: the exact posterior when S is diagonal, otherwise its diagonal
        mu = (x.flatten(1) - self.b) @ (2 * self.w @ self.s)
        logvar = torch.diagonal(self.s).log().expand_as(mu)
        return mu + self.mean_shift, logvar + self.logvar_shift

    def log_px(self, x):
        cov = self.w @ self.w.T + 0.5 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.flatten(1))


def test_iwae_is_exact_with_the_exact_posterior():
    vae = LinearGaussianVAE(d_z=1)  # one latent: the diagonal posterior is exact
    x = torch.rand(50, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = oodm.likelihood_scores(vae.encoder, vae.decoder, x, samples=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s["iwae"], vae.log_px(x), rtol=1e-9, atol=1e-9)  # every weight equals p(x)
    assert s["elbo"].mean().item() == pytest.approx(vae.log_px(x).mean().item(), abs=0.1)  # KL gap 0: only MC noise


def test_iwae_bound_is_above_the_elbo_and_converges():
    vae = LinearGaussianVAE(d_z=3)
    vae.mean_shift, vae.logvar_shift = 0.3, 0.5  # a worse proposal: a visible ELBO gap
    x = torch.rand(300, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    log_px = vae.log_px(x).mean().item()
    gaps, elbos = [], []
    for m in (1, 10, 100, 1000):
        s = oodm.likelihood_scores(vae.encoder, vae.decoder, x, samples=m, generator=torch.Generator().manual_seed(m))
        gaps.append(log_px - s["iwae"].mean().item())
        elbos.append(s["elbo"].mean().item())
    elbo = elbos[-1]
    assert log_px - elbo > 0.2  # the ELBO is a strict lower bound here
    assert gaps[0] == pytest.approx(log_px - elbo, abs=0.3)  # one importance sample: an unbiased (noisy) ELBO
    # IWAE ≥ ELBO, ≤ log p(x) in expectation (up to Monte-Carlo noise), converging to log p(x) as M grows
    noise = 0.03  # Monte-Carlo noise of a 300-image mean at large M
    assert gaps[0] > gaps[1] > gaps[2] - noise and min(gaps) > -noise and abs(gaps[3]) < noise and gaps[1] < 0.1 * gaps[0]


class NoiseImages(DataSource):
    """Uniform noise images of a given shape (an OOD set for tests)."""

    kind = "images"

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> BatchStream:
        raise NotImplementedError

    def test_batch(self, n: int, seed: int = 0) -> Batch:
        return Batch(torch.rand(n, *self.shape, generator=torch.Generator().manual_seed(seed)))


def test_evaluate_ood_writes_results_and_histogram(tiny_run):
    result = oodm.evaluate_ood(tiny_run, out_data=NoiseImages(tuple(tiny_run.data.shape)), score="iwae", samples=2, n=100)
    scores = result.pop("_scores")
    assert set(scores) == {"train", "test", "ood"} and len(scores["ood"]) == 100
    assert result["auroc"] > 0.9  # uniform noise is far from digits even for a barely trained model
    assert (tiny_run.path / "metrics" / "ood.jsonl").is_file() and result["figure"].endswith(".png")
    assert result["figure_extremes"].endswith("-extremes.png") and Path(result["figure_extremes"]).is_file()


def test_extremes_pick_the_images_the_scores_point_to(tiny_run):
    data = tiny_run.data
    batches = [x for x, _ in oodm.iter_images(data, "test", 50, 16, seed=5)]
    every = torch.cat(batches)
    picked = oodm.images_at(data, "test", 50, 16, 5, [49, 0, 17])
    assert torch.equal(picked, every[[49, 0, 17]])
    noise = NoiseImages(tuple(data.shape))
    scores = {"test": every.flatten(1).mean(1).numpy(), "ood": -np.arange(50.0)}
    with mock.patch("genvae.viz.images.save_grid", side_effect=lambda grid, path, caption: grid) as save:
        grid = oodm.save_extremes(scores, data, noise, 50, 16, 3, Path("unused.png"), count=4)
    expected_ood = noise.test_batch(50, seed=6).x[:4]  # the highest OOD scores: positions 0..3
    expected_in = every[np.argsort(scores["test"])[:4]]  # the darkest in-distribution images
    from genvae.viz.images import make_grid

    assert save.called and torch.equal(grid, make_grid(torch.cat([expected_ood, expected_in]), nrow=4))
    with pytest.raises(DataError, match="shape"):
        oodm.evaluate_ood(tiny_run, out_data=NoiseImages((1, 8, 8)), n=10, figure=False, write=False)
    with pytest.raises(ConfigError, match="score"):
        oodm.evaluate_ood(tiny_run, out_data="digits", score="bpd")


def test_metric_plugins_register():
    from genvae.core.plugins import get_plugins, load_plugins

    plugins = get_plugins()
    missing = [(n, m) for n, m in (("fid", fidm), ("ood", oodm)) if n not in plugins.metrics]
    if missing:
        plugins = load_plugins(extra=missing)
    assert {"fid", "ood"} <= set(plugins.metrics.names())
    with pytest.raises(ConfigError, match="reference"):
        plugins.metrics.get("fid").evaluate(None)


def test_bench_ood_runs_in_parallel_jobs_with_the_same_results(shared_data, tmp_path):
    kwargs = dict(steps=3, seeds=1, arch="mlp", overrides=["arch.hidden=16", "train.log_every=0"], n=200)
    one = bench_ood.run_bench_ood(tmp_path / "one", jobs=1, **kwargs)
    two = bench_ood.run_bench_ood(tmp_path / "two", jobs=2, **kwargs)
    for o in ("vae", "soft-intro"):
        assert [r["seed"] for r in one["runs"][o]] == [r["seed"] for r in two["runs"][o]] == [0]
        assert one["summary"][o]["runs"] == pytest.approx(two["summary"][o]["runs"], abs=1e-12)
    table = (tmp_path / "two" / "table.md").read_text()
    assert "| soft-intro |" in table and "0.999 ± 0.0004" in table and "2 job(s)" in table
    with pytest.raises(ConfigError, match="jobs"):
        bench_ood.run_bench_ood(tmp_path / "x", jobs=0, **kwargs)


def test_bench_ood_continues_an_interrupted_run_and_reuses_finished_ones(shared_data, tmp_path, monkeypatch):
    import genvae.core.trainer as trainer_module

    kwargs = dict(steps=4, seeds=1, objectives=("soft-intro",), arch="mlp", overrides=["arch.hidden=16", "train.log_every=1"], n=200)
    monkeypatch.setattr(bench_ood, "BENCH_CHECKPOINT_EVERY", 2)
    straight = bench_ood.run_bench_ood(tmp_path / "straight", **kwargs)

    real_train = trainer_module.train

    def crash_at_step_3(record):
        if record["step"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "train", lambda *a, **k: real_train(*a, **k, on_log=crash_at_step_3))
    with pytest.raises(KeyboardInterrupt):
        bench_ood.run_bench_ood(tmp_path / "crashed", **kwargs)
    monkeypatch.setattr(trainer_module, "train", real_train)
    continued = bench_ood.run_bench_ood(tmp_path / "crashed", **kwargs)
    run = continued["runs"]["soft-intro"][0]
    assert run["resumed_at"] == 2 and run["steps"] == 4
    assert continued["summary"]["soft-intro"]["runs"] == pytest.approx(straight["summary"]["soft-intro"]["runs"], abs=1e-12)

    again = bench_ood.run_bench_ood(tmp_path / "crashed", **kwargs)  # finished: evaluated, not retrained
    assert again["runs"]["soft-intro"][0]["resumed_at"] == 4
    with pytest.raises(RunDirError, match="optim.lr"):
        bench_ood.run_bench_ood(tmp_path / "crashed", **{**kwargs, "overrides": [*kwargs["overrides"], "optim.lr=0.01"]})


def test_bench_options_of_one_objective_skip_the_others_and_typos_fail_before_training(shared_data, tmp_path):
    from genvae.core.bench_run import settings_for

    sets = ["objective.beta_rec=16", "objective.gamma_r=0.01", "arch.hidden=16"]
    assert settings_for("soft-intro", sets, ("soft-intro", "vae")) == sets
    assert settings_for("vae", sets, ("soft-intro", "vae")) == ["objective.beta_rec=16", "arch.hidden=16"]
    assert settings_for("vae", sets, ("vae",)) == sets  # alone, vae gets the error below

    logged: list[str] = []
    kwargs = dict(steps=2, seeds=1, arch="mlp", n=100, objectives=("soft-intro", "vae"), log=logged.append)
    result = bench_ood.run_bench_ood(tmp_path / "both", overrides=[*sets, "train.log_every=0"], **kwargs)
    assert "vae has no option objective.gamma_r; its runs go without" in logged[0]
    saved = {o: json.loads((tmp_path / "both" / f"{o}-seed0" / "config.json").read_text())["objective"] for o in ("soft-intro", "vae")}
    assert saved["soft-intro"]["gamma_r"] == 0.01 and "gamma_r" not in saved["vae"] and saved["vae"]["beta_rec"] == 16
    assert set(result["summary"]) == {"soft-intro", "vae"}
    with pytest.raises(ConfigError, match="unknown option objective.gama_r"):
        bench_ood.run_bench_ood(tmp_path / "typo", overrides=["objective.gama_r=0.01"], **kwargs)
    assert not any((tmp_path / "typo").glob("*-seed0"))  # nothing trained


def test_feature_progress_without_a_terminal_prints_lines(capsys, monkeypatch):
    from genvae.core import progress

    times = iter([0.0, 5.0, 20.0, 21.0, 40.0])  # start; then one reading per update / line
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(times))
    with progress.ProgressLines("reference features (digits)", total=3, every=15.0) as lines:
        lines.update(None, 1)  # 5 s after the start: quiet
        lines.update(None, 1)  # 20 s: a line
        lines.update(None, 1)  # done: the closing line says so
    assert capsys.readouterr().err.splitlines() == ["reference features (digits): 2/3 batches, 20 s", "reference features (digits): 3/3 batches, 40 s"]


def test_feature_statistics_are_float64_with_the_unbiased_covariance():
    """As pytorch-fid (np.cov: divides by N − 1), in float64 whatever the features' dtype."""
    mu, sigma = distances.feature_statistics(torch.tensor([[0.0, 1.0], [2.0, 5.0]], dtype=torch.float32))
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_array_equal(mu, [1.0, 3.0])
    np.testing.assert_array_equal(sigma, [[2.0, 4.0], [4.0, 8.0]])  # deviations (±1, ±2), summed, / (2 − 1)
    big = np.array([[16_777_217.0, 0.0], [16_777_219.0, 0.0], [16_777_221.0, 0.0]])  # odd integers above 2^24: not float32 numbers
    assert distances.feature_statistics(big)[1][0, 0] == 4.0


def test_frechet_distance_by_hand():
    # 1-d: (0 − 1)² + 4 + 1 − 2·sqrt(4·1) = 2
    assert distances.frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([1.0]), np.array([[1.0]])) == pytest.approx(2.0, rel=1e-12)
    # diagonal 2-d: |(1, 2) − (0, 0)|² + (1 + 9) + (4 + 1) − 2·(sqrt(1·4) + sqrt(9·1)) = 5 + 15 − 10 = 10
    s1, s2 = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    assert distances.frechet_distance(np.array([1.0, 2.0]), s1, np.zeros(2), s2) == pytest.approx(10.0, rel=1e-12)


def test_kid_by_hand():
    """Features (0, 0), (1, 1) against (1, 1), (2, 2), d = 2: kernel k(x, y) = (x·y/2 + 1)³.
    k_xx off the diagonal: k((0,0),(1,1)) = 1; k_yy: k((1,1),(2,2)) = 3³ = 27; k_xy: 1, 1, 2³ = 8, 27.
    Unbiased MMD² = (2·1 + 2·27) / (2·1) − 2·(1 + 1 + 8 + 27) / (2·2) = 28 − 18.5 = 9.5, on every subset
    (the subset size falls to the 2 vectors there are)."""
    gen, real = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 1.0], [2.0, 2.0]])
    mean, std, size = distances.kernel_inception_distance(gen, real, subsets=4)
    assert (mean, std, size) == (pytest.approx(9.5, rel=1e-12), 0.0, 2)


def test_precision_recall_by_hand():
    """1-d features. k = 1: the real samples 0, 1, 3, 7 have k-NN radii 1, 1, 2, 4; the generated
    0.5 (0.5 from 0), 4.5 (1.5 from 3) and 11 (exactly 4 from 7: on the ball's edge, which counts,
    ≤ as Kynkäänniemi et al. and torch-fidelity) are precise, 30 is not. The generated radii are 4,
    4, 6.5 and 19, and every real sample lies within 4 of 0.5 or 4.5: recall 1."""
    col = lambda values: torch.tensor(values, dtype=torch.float64).unsqueeze(1)  # noqa: E731
    assert distances.precision_recall(col([0.5, 11.0, 4.5, 30.0]), col([0.0, 1.0, 3.0, 7.0]), k=1) == (0.75, 1.0)
    # the default k = 3: real 0, 1, 2, 3, 10 have 3rd-neighbour radii 3, 2, 2, 3, 9; of the generated
    # 5, 12, 20, 30, 40 only 5 (2 from 3) and 12 (2 from 10) are precise; generated radii 25, 18, 15, 18, 28
    assert distances.precision_recall(col([5.0, 12.0, 20.0, 30.0, 40.0]), col([0.0, 1.0, 2.0, 3.0, 10.0])) == (0.4, 1.0)


def test_inception_features_take_images_rounded_to_uint8_and_scaled_as_the_tf_graph():
    """What reaches the network: round(255·x) clipped to [0, 255], then (v − 128) / 128; images
    already 299 × 299 are not resized. The wrapper and its network stay in eval mode."""

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def forward(self, x):
            self.seen.append(x)
            return torch.zeros(len(x), incm.FEATURE_DIM)

    net = Recorder()
    extractor = incm.InceptionFeatures(net)
    extractor.train()
    assert not extractor.training and not net.training
    x = torch.full((1, 1, 299, 299), 0.5)
    x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 1.3, 0.9 / 255])
    extractor(x)
    seen = net.seen[0]
    assert seen.shape == (1, 3, 299, 299)
    # 0.5·255 = 127.5 rounds half to even: 128 -> 0; 0 -> -1; 255 and the clipped 331.5 -> 127/128; 0.9 -> 1 -> -127/128
    assert seen[0, :, 0, :4].tolist() == [[-1.0, 127 / 128, 127 / 128, -127 / 128]] * 3
    assert seen[0, 0, 1, 0].item() == 0.0
    # prepare_inception_input resizes with TensorFlow 1's bilinear rule unless told otherwise
    q = image_prep.quantize_uint8(torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(incm.prepare_inception_input(q), (image_prep.resize_tf1_bilinear(q.float().expand(-1, 3, -1, -1), 299) - 128) / 128)


def test_elbo_is_the_mean_over_the_draws_of_log_p_x_given_z_minus_the_closed_form_kl():
    """For the linear-Gaussian decoder E_q‖x − Wz − b‖² = ‖x − Wμ − b‖² + Σ_j σ_j²‖W_j‖², so the
    ELBO of each image is known exactly. log p(x|z) has a standard deviation of about 3.4 nats over
    the draws here: with 4,000 draws each image's estimate lies within 0.3 nats (5 standard errors)
    and their mean over the 20 images within 0.06 (one draw would miss by about 3)."""
    vae = LinearGaussianVAE(d_z=3)
    vae.mean_shift, vae.logvar_shift = 0.3, 0.5
    x = torch.rand(20, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mu, logvar = vae.encoder(x)
    residual = x.flatten(1) - mu @ vae.w.T - vae.b
    expected_sq = residual.pow(2).sum(1) + (logvar.exp() * vae.w.pow(2).sum(0)).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
    elbo = -expected_sq + 6 * math.log(1 / math.pi) - kl  # D = 12: (D/2)·log(β_rec/π), β_rec = 1
    s = oodm.likelihood_scores(vae.encoder, vae.decoder, x, samples=4000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s["elbo"], elbo, rtol=0, atol=0.3)
    assert s["elbo"].mean().item() == pytest.approx(elbo.mean().item(), abs=0.06)


class ConditionalLinearGaussianVAE(LinearGaussianVAE):
    """The linear-Gaussian model with a class-dependent offset b + 0.7·y (exact posterior for d_z = 1)."""

    def offset(self, y):
        return self.b + 0.7 * y.to(torch.float64).unsqueeze(1)

    def decoder(self, z, y=None):
        return (z @ self.w.T + self.offset(y)).view(-1, 1, 3, 4)

    def encoder(self, x, y=None):
        mu = (x.flatten(1) - self.offset(y)) @ (2 * self.w @ self.s)
        return mu, torch.diagonal(self.s).log().expand_as(mu)

    def log_px(self, x, y):
        cov = self.w @ self.w.T + 0.5 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.offset(y), cov).log_prob(x.flatten(1))


def test_a_conditional_models_draws_are_decoded_with_their_own_images_class():
    """Each of the M draws of image i is decoded with y_i: with the exact posterior every
    importance weight is p(x_i|y_i), so the IWAE equals it (a draw paired with another image's
    class does not)."""
    vae = ConditionalLinearGaussianVAE(d_z=1)
    x = torch.rand(6, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    s = oodm.likelihood_scores(vae.encoder, vae.decoder, x, y, samples=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s["iwae"], vae.log_px(x, y), rtol=1e-9, atol=1e-9)


def test_decoder_calls_hold_at_most_max_decode_images_and_m_defaults_to_the_papers_5():
    vae = LinearGaussianVAE(d_z=1)
    rows = []

    def decoder(z, y=None):
        rows.append(len(z))
        return vae.decoder(z, y)

    x = torch.rand(2, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    oodm.likelihood_scores(vae.encoder, decoder, x, samples=5, max_decode=4)  # 2 draws of 2 images per call
    assert rows == [4, 4, 2]
    rows.clear()
    oodm.likelihood_scores(vae.encoder, decoder, x)
    assert rows == [10]  # M = 5 draws of each image


def test_the_python_functions_default_to_the_command_lines_numbers_of_draws():
    import inspect

    from genvae.commands import evaluate as commands
    from genvae.plugins.metrics import likelihood

    default = lambda f: inspect.signature(f).parameters["samples"].default  # noqa: E731
    assert default(oodm.evaluate_ood) == default(oodm.likelihood_scores) == default(commands.ood).default == 5  # the paper's M
    assert default(likelihood.evaluate_likelihood) == default(commands.likelihood).default == 100


def test_bernoulli_likelihood_ignores_beta_rec_and_a_plugin_loss_is_scaled_by_it():
    """bce: log p(x|z) = Σ x log x̂ + (1 − x) log(1 − x̂), whatever β_rec (it is not a temperature of a
    Bernoulli); a plugin's loss L: −β_rec·L (a density up to a constant)."""
    import genvae
    from genvae.core.plugins import load_plugins, use_plugins

    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).view(1, 1, 2, 2)
    x_rec = torch.tensor([[0.8, 0.4, 0.5, 0.9]]).view(1, 1, 2, 2)
    by_hand = math.log(0.8) + math.log(0.6) + math.log(0.5) + math.log(0.9)
    assert oodm.log_likelihood(x, x_rec, "bce", beta_rec=0.3).item() == pytest.approx(by_hand, rel=1e-6)

    class L1Plugin:
        @staticmethod
        @genvae.hookimpl
        def genvae_register_losses(register):
            register("l1-test", lambda a, b: (a - b).abs().flatten(1).sum(1))

    use_plugins(load_plugins(extra=[("l1-test", L1Plugin)]))
    assert oodm.log_likelihood(x, x_rec, "l1-test", beta_rec=0.3).item() == pytest.approx(-0.3 * (0.2 + 0.4 + 0.5 + 0.1), rel=1e-6)


def test_the_auroc_is_of_the_test_images_against_the_ood_ones_and_the_train_one_beside_it(tiny_run, monkeypatch):
    """Scores by hand: train 0, 1; test 3, 4; OOD 2, 5. Test vs OOD: of the 4 pairs only OOD 2 is
    below a test score twice (3 and 4): 0.5; train vs OOD: no OOD score is below a train one: 0."""
    by_split = {"train": np.array([0.0, 1.0]), "test": np.array([3.0, 4.0])}

    def scores(run, data, split, n, samples, batch_size, seed):
        s = np.array([2.0, 5.0]) if isinstance(data, NoiseImages) else by_split[split]
        return {"elbo": s, "iwae": s}

    monkeypatch.setattr(oodm, "run_scores", scores)
    with pytest.warns(UserWarning, match="coarse"):
        result = oodm.evaluate_ood(tiny_run, out_data=NoiseImages(tuple(tiny_run.data.shape)), figure=False, write=False)
    assert (result["auroc"], result["auroc_train_vs_ood"]) == (0.5, 0.0)
    assert (result["mean_train"], result["mean_test"], result["mean_ood"]) == (0.5, 3.5, 3.5)
