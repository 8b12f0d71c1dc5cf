"""``genvae eval ...`` as a user meets it: mistakes give one line naming the problem and the fix."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genvae.cli import app
from genvae.plugins.metrics import inception as incm

runner = CliRunner()
TINY = ["--steps", "3", "--batch-size", "16", "--no-progress", "--set", "train.checkpoint_every=0", "--set", "train.figures_every=0"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Please file an issue" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits (image) run and an 8gaussians (2-D) run, a few steps each."""
    from genvae.core.plugins import use_plugins

    root = tmp_path_factory.mktemp("eval-ux")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", "1")
        use_plugins(None)
        for data, extra in (("digits", ["--set", "arch.z_dim=4"]), ("8gaussians", [])):
            result = invoke("train", "--arch", "mlp", "--data", data, "--run-dir", root / data, "--set", "arch.hidden=16", *extra, *TINY)
            assert result.exit_code == 0, result.output
        use_plugins(None)
    return root


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def test_toy2d_on_an_image_run_and_fid_on_a_2d_run_name_the_right_command(runs, monkeypatch):
    line = one_line_error(invoke("eval", "toy2d", runs / "digits"))
    assert "trained on digits (samples of shape (1, 16, 16)); toy2d needs a run trained on a 2-D dataset" in line
    assert "'genvae eval fid' or 'genvae eval ood'" in line
    monkeypatch.delenv(incm.WEIGHTS_ENV, raising=False)
    line = one_line_error(invoke("eval", "fid", runs / "8gaussians", "--ref", "digits"))
    assert "is not an image model: it was trained on 8gaussians (samples of shape (2,))" in line
    assert "Inception" not in line  # checked before asking for the weights


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ood", "{digits}", "--out", "mnist:size=16"], "unknown dataset option data.size for 'mnist'; valid: resolution, root, split"),
        (["ood", "{digits}", "--in", "digits:foo=1", "--out", "digits"], "unknown dataset option data.foo for 'digits'"),
        (["train-classifier", "digits", "--out", "{tmp}/clf", "--data-option", "foo=1"], "unknown dataset option data.foo for 'digits'"),
        (["fid-ref", "digits", "--out", "{tmp}/r.npz", "--data-option", "foo=1"], "unknown dataset option data.foo for 'digits'"),
        (["fid", "{digits}", "--ref", "digits:foo=1", "--features", "random-conv"], "unknown dataset option data.foo for 'digits'"),
        (
            ["fid-ref", "folder", "--out", "{tmp}/r.npz", "--data-option", "path={rgb}", "--data-option", "resolution=abc", "--features", "random-conv"],
            "data.resolution = 'abc' has the wrong type; expected int",
        ),
    ],
)
def test_dataset_options_are_checked_as_in_train(runs, rgb_folder, tmp_path, args, expected):
    args = [a.format(digits=runs / "digits", tmp=tmp_path, rgb=rgb_folder) for a in args]
    assert expected in one_line_error(invoke("eval", *args))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ood", "{digits}", "--out", "digits", "--num-images", "0"], "--num-images must be at least 1, got 0"),
        (["ood", "{digits}", "--ood", "digits", "--num-images", "-1"], "--num-images must be at least 1, got -1"),
        (["ood", "{digits}", "--out", "digits", "--score", "iwae", "--samples", "0"], "--samples must be at least 1, got 0"),
        (["fid", "{digits}", "--ref", "digits", "--features", "random-conv", "--num-samples", "1"], "--num-samples must be at least 2"),
        (["fid", "{digits}", "--ref", "digits", "--features", "random-conv", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["fid-ref", "digits", "--out", "{tmp}/r.npz", "--features", "random-conv", "--num-samples", "0"], "--num-samples must be at least 2"),
        (["train-classifier", "digits", "--out", "{tmp}/clf", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ],
)
def test_numeric_options_out_of_range_are_refused(runs, tmp_path, args, expected):
    args = [a.format(digits=runs / "digits", tmp=tmp_path) for a in args]
    assert expected in one_line_error(invoke("eval", *args))


def test_a_file_that_is_no_state_dict_as_inception_weights(runs, rgb_folder):
    png = rgb_folder / "00.png"
    line = one_line_error(invoke("eval", "fid", runs / "digits", "--ref", "digits", "--inception-weights", png))
    assert line == (f"error: {png} is not a PyTorch state dict; expected the FID Inception weights file pt_inception-2015-12-05-6726825d.pth "
                    "(pytorch-fid) or weights-inception-2015-12-05-6726825d.pth (torch-fidelity)")  # fmt: skip


def test_references_that_are_neither_stats_datasets_nor_folders(runs, rgb_folder):
    line = one_line_error(invoke("eval", "fid", runs / "digits", "--ref", rgb_folder / "00.png", "--features", "random-conv"))
    assert "is neither a .npz statistics file, a dataset name nor an existing folder of images" in line
    line = one_line_error(invoke("eval", "fid-ref", "/nonexistent/path", "--out", "r.npz"))
    assert line.startswith("error: '/nonexistent/path' is neither a dataset name nor an existing folder of images; datasets: ")
    assert "did you mean 'digits'?" in one_line_error(invoke("eval", "fid-ref", "digit", "--out", "r.npz"))


def test_fid_ref_split_is_train_or_test(tmp_path):
    line = one_line_error(invoke("eval", "fid-ref", "digits", "--split", "bogus", "--out", tmp_path / "r.npz", "--features", "random-conv"))
    assert line == "error: --split must be train or test, got 'bogus'"
    assert not (tmp_path / "r.npz").exists()


def test_fid_refuses_references_of_another_image_shape(runs, rgb_folder, tmp_path, monkeypatch):
    monkeypatch.delenv(incm.WEIGHTS_ENV, raising=False)  # checked before the Inception weights are asked for
    line = one_line_error(invoke("eval", "fid", runs / "digits", "--ref", f"folder:path={rgb_folder},channels=3", "--num-samples", "8"))
    assert "holds images of shape (3, 16, 16) but the run's are (1, 16, 16)" in line  # a folder is read at the run's size
    line = one_line_error(invoke("eval", "fid", runs / "digits", "--ref", rgb_folder, "--num-samples", "8"))
    assert "no Inception weight file given" in line  # and at the run's channels unless told otherwise: the shapes agree
    stats = tmp_path / "rgb16.npz"  # a typed option through name:key=value, then the shape stored in the statistics
    made = invoke("eval", "fid-ref", f"folder:path={rgb_folder},resolution=16", "--out", stats, "--features", "random-conv")
    assert made.exit_code == 0, made.output
    line = one_line_error(invoke("eval", "fid", runs / "digits", "--ref", stats, "--num-samples", "8"))
    assert "holds images of shape (3, 16, 16) but the run's are (1, 16, 16)" in line


def test_fid_warns_in_one_line_when_the_reference_is_too_small_for_its_covariance(runs, tmp_path):
    stats = tmp_path / "digits100.npz"
    made = invoke("eval", "fid-ref", "digits", "--out", stats, "--features", "random-conv", "--num-samples", "100")
    assert made.exit_code == 0, made.output
    result = invoke("eval", "fid", runs / "digits", "--ref", stats, "--num-samples", "520", "--batch-size", "260")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "rank-deficient" in line]
    expected = (f"warning: reference {stats} has 100 images, fewer than 2 × the 256 feature dimensions: its covariance is "
                "rank-deficient and the FID unreliable; use more images")  # fmt: skip
    assert warnings == [expected]


def test_eval_metric_names_an_option_the_metric_does_not_take_and_lists_its_options(runs):
    line = one_line_error(invoke("eval", "metric", "toy2d", runs / "8gaussians", "--option", "foo=1"))
    assert "metric 'toy2d' has no option 'foo'; its options: " in line and "figures" in line and "out_dir" in line
    # ood passes its options on to evaluate_ood: those are listed too (n, not the command's --num-images)
    line = one_line_error(invoke("eval", "metric", "ood", runs / "digits", "--option", "out=digits", "--option", "num_images=5"))
    assert "metric 'ood' has no option 'num_images'; its options: " in line and ", n, " in line and "score" in line


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_damaged_run_file_is_named_in_one_line_with_the_fix(runs, tmp_path, command):
    run = tmp_path / "run"
    shutil.copytree(runs / "8gaussians", run)
    args = ["sample", run, "--num-samples", "10", "--out", tmp_path / "x.pt"] if command == "sample" else ["eval", "toy2d", run]
    weights = run / "decoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    line = one_line_error(invoke(*args))
    twin = run / "checkpoint" / "decoder" / "model.safetensors"
    assert line.startswith(f"error: {weights} is unreadable (truncated or not a safetensors file); copy {twin} over it "
                           "(the same file, saved with the last checkpoint), or restore it from a backup")  # fmt: skip
    shutil.copy(twin, weights)  # the fix it names works
    (run / "config.json").write_text("{")
    line = one_line_error(invoke(*args))
    assert line == (f"error: {run / 'config.json'} is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                    "(char 1)); restore it from a backup, or use an earlier copy of the run, or start a new run")  # fmt: skip
    shutil.copy(runs / "8gaussians" / "config.json", run / "config.json")
    assert invoke(*args).exit_code == 0


def test_ood_data_of_another_shape_is_one_line_naming_both_shapes(runs, rgb_folder):
    line = one_line_error(invoke("eval", "ood", runs / "digits", "--out", f"folder:path={rgb_folder},resolution=16,channels=3", "-n", "4"))
    assert "dataset 'folder' has shape (3, 16, 16) but the model was trained on (1, 16, 16); give data of the model's shape" in line


def test_the_shape_hint_offers_mnist_to_greyscale_runs_only():
    from types import SimpleNamespace

    from genvae.errors import DataError
    from genvae.plugins.metrics.ood import require_run_shape

    mnist = SimpleNamespace(name="mnist", shape=(1, 28, 28))
    with pytest.raises(DataError, match=r"\(an image folder: folder:path=DIR,resolution=16,channels=1; mnist / fashion-mnist: NAME:resolution=16\)$"):
        require_run_shape(mnist, SimpleNamespace(data=SimpleNamespace(shape=(1, 16, 16))))
    with pytest.raises(DataError, match=r"\(an image folder: folder:path=DIR,resolution=16,channels=3\)$"):  # mnist has no 3-channel form
        require_run_shape(mnist, SimpleNamespace(data=SimpleNamespace(shape=(3, 16, 16))))


def test_translation_of_a_run_without_class_and_content_is_one_line(runs):
    line = one_line_error(invoke("eval", "translation", runs / "digits"))
    assert "content transfer error needs a dataset that renders ground truth (shapes3d-synthetic)" in line
    assert "; evaluate a run trained with --arch lord --data shapes3d-synthetic" in line


def test_bench_ood_checks_the_pair_before_training(tmp_path):
    from PIL import Image

    folder = tmp_path / "rgb"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    result = invoke("bench", "ood", "--in", "digits", "--ood", f"folder:path={folder},resolution=16,channels=3", "--out", tmp_path / "bench",
                    "--steps", "2", "--seeds", "1", "--arch", "mlp")
    assert result.exit_code == 2, result.output
    assert "has shape (3, 16, 16) but 'digits' has (1, 16, 16); pick datasets of one shape" in " ".join(result.output.split())
    assert not list((tmp_path / "bench").glob("*-seed0"))  # nothing trained


def test_bench_ood_runs_another_row_of_table_7(shared_data, tmp_path):
    result = invoke("bench", "ood", "--in", "fashion-mnist", "--ood", "mnist:split=test", "--out", tmp_path / "bench", "--steps", "2",
                    "--seeds", "1", "--objective", "vae", "--arch", "mlp", "--set", "arch.hidden=16", "--set", "train.log_every=0")
    assert result.exit_code == 0, result.output
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "fashion-mnist (in) vs mnist:split=test (out)" in table and "| vae |" in table and "0.996 ± 0.0009" in table


def test_ood_on_a_2d_run_draws_the_histograms_and_no_picture_grid(runs):
    """The extremes figure shows images; 2-D points drawn as pictures were a 32x785 strip."""
    result = invoke("eval", "ood", runs / "8gaussians", "--out", "rings", "-n", "64")
    assert result.exit_code == 0, result.output
    figures = sorted(p.name for p in (runs / "8gaussians" / "metrics").glob("ood-*.png"))
    assert figures == ["ood-8gaussians-vs-rings-elbo.png"] and "coarse" not in result.output
    same = invoke("eval", "ood", runs / "8gaussians", "--out", "8gaussians", "-n", "64")
    assert same.exit_code == 0 and "warning: the in-distribution and out-of-distribution data are the same (8gaussians)" in " ".join(same.output.split())
    few = invoke("eval", "ood", runs / "8gaussians", "--out", "rings", "-n", "10")
    assert few.exit_code == 0 and "warning: the AUROC compares 10 in-distribution with 10 out-of-distribution images: with so few (10) it is coarse" in " ".join(few.output.split())


def test_fid_stats_scores_real_against_real(tmp_path):
    """The floor a model's FID is read against: the test split against the train split."""
    import json

    for split in ("train", "test"):
        made = invoke("eval", "fid-ref", "digits", "--split", split, "--out", tmp_path / f"{split}.npz", "--features", "random-conv", "--num-samples", "200")
        assert made.exit_code == 0, made.output
    same = invoke("eval", "fid-stats", tmp_path / "train.npz", tmp_path / "train.npz")
    assert same.exit_code == 0 and json.loads(same.output)["fid"] == pytest.approx(0.0, abs=1e-6)
    assert json.loads(same.output)["note"].startswith("the same file twice")
    floor = json.loads(invoke("eval", "fid-stats", tmp_path / "test.npz", tmp_path / "train.npz").output)
    assert floor["fid"] > 0 and (floor["a_n"], floor["b_n"], floor["features"]) == (200, 200, "random-conv") and "kid_mean" in floor
    with np.load(tmp_path / "train.npz") as f:
        saved = {k: f[k] for k in f.files}
    np.savez(tmp_path / "other.npz", **{**saved, "settings": json.dumps({**json.loads(str(saved["settings"])), "features": "inception"})})
    line = one_line_error(invoke("eval", "fid-stats", tmp_path / "other.npz", tmp_path / "train.npz"))
    assert "was computed with other feature settings (features: 'inception' vs 'random-conv'" in line
    line = one_line_error(invoke("eval", "fid-stats", tmp_path / "missing.npz", tmp_path / "train.npz"))
    assert "reference statistics" in line and "missing.npz not found" in line
